"""Tiny random-weight LLaVA and IDEFICS models, saved like hub checkpoints, for tests that run offline on CPU.

Same transformers classes, processors and prompt formats as llava-hf/llava-1.5-7b-hf and idefics-9b-instruct;
only the sizes differ. The tokenizer is a byte-level BPE trained here, in-process. Layer widths are multiples of 64
so bitsandbytes can quantise them to 4 bits on CPU.
"""
from pathlib import Path

import torch

from medvlm.settings import IGNORE_INDEX

CORPUS = [
    "USER: ASSISTANT: User: Assistant: What is shown in this image? Is there a fracture? Yes No",
    "The chest x-ray shows a right sided pneumothorax. The lungs are clear. There is no effusion.",
    "Is the liver enlarged? Where is the lesion? The lesion is in the left temporal lobe of the brain.",
    "MRI of the brain with contrast shows a ring enhancing mass. CT of the abdomen is normal.",
    "What organ is this? kidney heart lung liver brain bone skin the a an of in on with and or",
]
WIDTH = 64


def build_tokenizer(special_tokens: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=448,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens})
    return tokenizer


def _vocab_size(tokenizer) -> int:
    return (len(tokenizer) + WIDTH - 1) // WIDTH * WIDTH


def save_tiny_llava(folder: Path, seed: int = 0, max_positions: int = 512) -> Path:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tokenizer = build_tokenizer(["<image>"])
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, projection_dim=WIDTH,
        ),
        text_config=LlamaConfig(
            vocab_size=_vocab_size(tokenizer), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_positions,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=16,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def save_tiny_idefics(folder: Path, seed: int = 0) -> Path:
    from transformers import IdeficsConfig, IdeficsForVisionText2Text, IdeficsImageProcessor, IdeficsProcessor

    tokenizer = build_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
    config = IdeficsConfig(
        vocab_size=_vocab_size(tokenizer), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
        num_attention_heads=4, cross_layer_interval=1, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        vision_config={"embed_dim": WIDTH, "image_size": 32, "patch_size": 8, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "intermediate_size": 2 * WIDTH},
        perceiver_config={"use_resampler": False},
    )
    torch.manual_seed(seed)
    model = IdeficsForVisionText2Text(config).eval()
    processor = IdeficsProcessor(IdeficsImageProcessor(image_size=32), tokenizer, image_size=32)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)


def teach(folder: Path, turns, image, continuation: str, steps: int = 80) -> None:
    """Overfit the saved model at `folder` to answer `turns` (+ image) with `continuation`, and save it back.

    Random weights emit noise; a model that has learnt one exact continuation lets tests check real stop tokens,
    stop strings and answer extraction on the real generate path.
    """
    from medvlm import models

    loaded = models.load(models.resolve(str(folder)), device="cpu", quantize="none")
    model = loaded.model
    inputs = loaded.family.encode(loaded.processor, turns, image)
    target = loaded.tokenizer(continuation, add_special_tokens=False, return_tensors="pt").input_ids
    batch = dict(inputs)
    batch["input_ids"] = torch.cat([inputs["input_ids"], target], dim=1)
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    if "image_attention_mask" in batch:  # IDEFICS: new text tokens see the same image as the last prompt token
        last = batch["image_attention_mask"][:, -1:, :]
        batch["image_attention_mask"] = torch.cat([batch["image_attention_mask"], last.repeat(1, target.shape[1], 1)], 1)
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    labels[:, -target.shape[1]:] = target
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)
