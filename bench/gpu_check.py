"""The CUDA paths no CPU test can reach: each tiny architecture loaded in 4-bit nf4 on the GPU, one answer, three QLoRA steps.

    python bench/gpu_check.py                 # on a machine with a CUDA GPU; prints one line per architecture
    python bench/gpu_check.py --kinds qwen2_5_vl gemma3

Builds the tests' tiny random-weight checkpoints (tests/tiny_models.py: LLaVA, IDEFICS, Gemma 3, Idefics3,
Qwen2.5-VL; MedVLM-Tiny is never quantised) and, for each, loads it as the app does with --quantize nf4 on cuda,
checks that the language model's linear layers are bitsandbytes 4-bit ones, answers one question about an image,
then runs three QLoRA steps of train.vlm on one batch (bf16 compute where the GPU has it) and says whether the loss fell.
Exit status 1 if any architecture failed.
"""
import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch
from PIL import Image
from tiny_models import CHAT_TEMPLATE_MODELS, save_tiny_idefics, save_tiny_llava

from medvlm import chat, models
from medvlm.chat import GenerationSettings

BUILDERS = {"llava": save_tiny_llava, "idefics": save_tiny_idefics, **CHAT_TEMPLATE_MODELS}


def check(kind: str, folder: Path) -> str:
    import bitsandbytes as bnb

    from train.vlm import LoraArguments, add_lora, answer_loss, collate, encode_with_labels, make_optimizer

    start = time.perf_counter()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    loaded = models.load(models.resolve(str(folder)), device="cuda", quantize="nf4", dtype=dtype)
    four_bit = sum(isinstance(m, bnb.nn.Linear4bit) for m in loaded.model.modules())
    image = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    answer = list(chat.stream_reply(loaded, [], "Is there a fracture?", image, GenerationSettings(max_new_tokens=8)))[-1]
    loaded.processor.tokenizer.padding_side = "right"
    batch = collate(loaded.family.generate_kwargs(loaded.processor)["pad_token_id"])(
        [encode_with_labels(loaded, [("What is shown?", "a head CT")], image)])
    batch = {k: v.to("cuda") if torch.is_tensor(v) else v for k, v in batch.items()}
    model = add_lora(loaded, LoraArguments(), quantized=True, checkpointing=True)
    model.train()
    optimizer = make_optimizer(model, lora_lr=1e-2, projector_lr=1e-2, paged_8bit=False)
    losses = []
    for _ in range(4):  # the loss before each of three steps, and after them
        loss = answer_loss(model, batch)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    ok = four_bit > 0 and losses[-1] < losses[0]
    return (f"{'ok  ' if ok else 'FAIL'} {kind:<11} {loaded.model.dtype} {four_bit} 4-bit linears; answer {str(answer)[:24]!r}; "
            f"QLoRA loss {losses[0]:.3f} -> {losses[-1]:.3f}; {time.perf_counter() - start:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=sorted(BUILDERS), default=sorted(BUILDERS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("python bench/gpu_check.py: error: no CUDA GPU here; run it where there is one", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    failed = 0
    with tempfile.TemporaryDirectory() as scratch:
        for kind in args.kinds:
            try:
                line = check(kind, BUILDERS[kind](Path(scratch) / kind))
                failed += line.startswith("FAIL")
                print(line, flush=True)
            except Exception as e:  # one architecture's failure must not hide the others'
                failed += 1
                print(f"FAIL {kind:<11} {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
                traceback.print_exc(file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
