"""Tiny random-weight LLaVA, IDEFICS, Gemma 3, Idefics3 and Qwen2.5-VL models, saved like hub checkpoints, for tests
that run offline on CPU.

Same transformers classes, processors and prompt formats as llava-hf/llava-1.5-7b-hf, idefics-9b-instruct,
google/medgemma-4b-it, HuggingFaceTB/SmolVLM-256M-Instruct and Qwen/Qwen2.5-VL-3B-Instruct (their chat templates
as published with those checkpoints); only the sizes differ. The tokenizer is a byte-level BPE trained here,
in-process. Layer widths are multiples of 64 so bitsandbytes can quantise them to 4 bits on CPU.
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


# --- chat-template models (medvlm.models.families.ChatTemplateFamily) ---------------------------------------------------
# The chat templates as the checkpoints publish them (chat_template.json / tokenizer_config.json on the hub).

GEMMA3_TEMPLATE = (
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n"
    "{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n"
)

SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}{% if message['content'][0]['type'] == "
    "'image' %}{{':'}}{% else %}{{': '}}{% endif %}{% for line in message['content'] %}{% if line['type'] == 'text' %}"
    "{{line['text']}}{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

QWEN2_5_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == "
    "'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


def _tokenizer_with(special: list[str], eos: str, bos: str | None = "<s>", extra: dict | None = None):
    from transformers import PreTrainedTokenizerFast

    base = build_tokenizer(special)
    return PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, unk_token="<unk>", bos_token=bos,
                                   eos_token=eos, pad_token="<pad>", extra_special_tokens=extra or {})


def _text_sizes(tokenizer, **more) -> dict:
    return dict(vocab_size=_vocab_size(tokenizer), hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **more)


def save_tiny_gemma3(folder: Path, seed: int = 0) -> Path:
    """google/medgemma-4b-it's layout: Gemma3ForConditionalGeneration, Gemma3Processor, <end_of_turn>-closed turns."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor, Gemma3TextConfig, SiglipVisionConfig

    tokenizer = _tokenizer_with(["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"],
                                eos="</s>",
                                extra={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"})
    config = Gemma3Config(
        text_config=Gemma3TextConfig(**_text_sizes(tokenizer, head_dim=16, sliding_window=64)),
        vision_config=SiglipVisionConfig(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2,
                                         num_attention_heads=4, image_size=32, patch_size=8),
        mm_tokens_per_image=4, boi_token_index=tokenizer.boi_token_id, eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer,
                                chat_template=GEMMA3_TEMPLATE, image_seq_length=4)
    return _save(folder, Gemma3ForConditionalGeneration, config, processor, seed)


def save_tiny_idefics3(folder: Path, seed: int = 0) -> Path:
    """HuggingFaceTB/SmolVLM-256M-Instruct's layout: Idefics3ForConditionalGeneration, Idefics3Processor (images split
    into tiles by their size, plus a global view), turns closed by <end_of_utterance>."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    grid = [f"<row_{r}_col_{c}>" for r in range(1, 5) for c in range(1, 5)]
    tokenizer = _tokenizer_with(["<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<image>", "<global-img>", *grid],
                                eos="<end_of_utterance>", bos="<|im_start|>")
    config = Idefics3Config(
        text_config=dict(model_type="llama", **_text_sizes(tokenizer)),
        vision_config=dict(hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    image_processor = Idefics3ImageProcessor(size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=SMOLVLM_TEMPLATE)
    return _save(folder, Idefics3ForConditionalGeneration, config, processor, seed)


def save_tiny_qwen2_5_vl(folder: Path, seed: int = 0) -> Path:
    """Qwen/Qwen2.5-VL-3B-Instruct's layout: Qwen2_5_VLForConditionalGeneration (3-D rotary positions), its processor
    (images cut into 2x2-merged patches by their size), ChatML turns closed by <|im_end|>."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = _tokenizer_with(["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"],
                                eos="<|im_end|>", bos=None)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")}
    config = Qwen2_5_VLConfig(
        text_config=_text_sizes(tokenizer, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
        vision_config=dict(depth=2, hidden_size=WIDTH, intermediate_size=2 * WIDTH, num_heads=4, patch_size=8, spatial_merge_size=2,
                           temporal_patch_size=2, window_size=32, out_hidden_size=WIDTH, fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    sizes = dict(patch_size=8, merge_size=2, temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=32 * 32, max_pixels=64 * 64, **sizes),
                                    tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(**sizes), chat_template=QWEN2_5_VL_TEMPLATE)
    return _save(folder, Qwen2_5_VLForConditionalGeneration, config, processor, seed)


CHAT_TEMPLATE_MODELS = {"gemma3": save_tiny_gemma3, "idefics3": save_tiny_idefics3, "qwen2_5_vl": save_tiny_qwen2_5_vl}


def _save(folder: Path, model_class, config, processor, seed: int) -> Path:
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return Path(folder)
