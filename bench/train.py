"""MedVLM-Tiny training throughput and peak memory, and batched evaluation against one question at a time.

    python bench/train.py                    # 8 training steps (rows packed and augmented as train.vlm does); 48 test questions
    python bench/train.py --questions 96 --eval-batch 16

Prints training samples/s and peak resident memory on this machine, then the ratio of a one-question-at-a-time
loop (the way the original notebooks scored: one model.generate per question) to our batched evaluation
(medvlm.predict: questions about one image share the prefix), on the same model and questions, under greedy
decoding (target >= 5x). The answers must be identical, or the comparison is void.
"""
import argparse
import dataclasses
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medvlm.settings import apply_offline_env  # noqa: E402

apply_offline_env()

import torch  # noqa: E402

from medvlm import models  # noqa: E402
from medvlm.chat import GenerationSettings  # noqa: E402
from medvlm.data import load_examples  # noqa: E402
from medvlm.predict import answer_batch, with_instruction  # noqa: E402
from train.vlm import (  # noqa: E402
    DataArguments, ImagePackedDataset, LoraArguments, TrainArguments,
    add_lora, answer_loss, collate, freeze_batchnorm, make_optimizer,
)

VQA_RAD = Path(__file__).resolve().parents[2] / "shared/data/vqa-rad/vqa_rad.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(VQA_RAD))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=TrainArguments.batch_size)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=DataArguments.augment,
                        help="train without train.vlm's augmentation (a new view of each image per draw)")
    parser.add_argument("--adapter", help="evaluate with this adapter (default: the registry's medvlm-tiny)")
    args = parser.parse_args()

    # Training throughput, the same code path as python -m train.vlm.
    base = dataclasses.replace(models.REGISTRY["medvlm-tiny"], adapter=None)  # a fresh LoRA on the bare base
    loaded = models.load(base, device="cpu")
    examples = load_examples(args.data, "train").examples
    dataset = ImagePackedDataset(loaded, [(examples, 1.0)], short_answer=True, max_branches=TrainArguments.pack_size, augment=args.augment)
    loaded.tokenizer.padding_side = "right"
    model = add_lora(loaded, LoraArguments(), quantized=False, checkpointing=False)
    optimizer = make_optimizer(model, loaded.family.lora_lr, TrainArguments.projector_lr, paged_8bit=False)
    model.train()
    freeze_batchnorm(model)
    pad = loaded.tokenizer.pad_token_id
    rows = args.steps * args.batch_size
    for i in range(rows):
        dataset[i]  # tokenised once per run, as in train.vlm: not part of the per-step cost (an augmented view is)
    samples, start = 0, time.perf_counter()
    for s in range(0, rows, args.batch_size):
        batch = collate(pad)([dataset[i] for i in range(s, s + args.batch_size)])
        samples += int(batch["examples"])
        loss = answer_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    train_seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    del model, optimizer

    # Evaluation: batched vs one at a time, same model (the registry's medvlm-tiny, adapter included) and questions.
    spec = models.resolve("medvlm-tiny", adapter=args.adapter) if args.adapter else models.resolve("medvlm-tiny")
    evaluator = models.load(spec, device="cpu")
    questions = load_examples(args.data, "test", limit=args.questions).examples
    items = [(e.image(), with_instruction(e.question, True)) for e in questions]
    settings = GenerationSettings(max_new_tokens=16, temperature=0.0)
    answer_batch(evaluator, items[:2], settings, batch_size=2)  # warm-up, both paths
    answer_batch(evaluator, items[:2], settings, batch_size=1, share_prefix=False)
    start = time.perf_counter()
    one_at_a_time = answer_batch(evaluator, items, settings, batch_size=1, share_prefix=False)
    single_seconds = time.perf_counter() - start
    start = time.perf_counter()
    batched = answer_batch(evaluator, items, settings, batch_size=args.eval_batch)
    batched_seconds = time.perf_counter() - start
    same = sum(a == b for a, b in zip(one_at_a_time, batched))

    print(f"model                       {spec.name}{' + ' + spec.adapter if spec.adapter else ''}, cpu, {torch.get_num_threads()} threads")
    print(f"training                    {samples} samples in {train_seconds:.1f} s = {samples / train_seconds:.2f} samples/s ({args.steps} steps of {args.batch_size} rows{', augmented' if args.augment else ', not augmented'})")
    print(f"peak resident memory        {peak_gb:.2f} GB")
    print(f"evaluation, one at a time   {len(items) / single_seconds:.2f} questions/s")
    print(f"evaluation, batched ({args.eval_batch:>3})   {len(items) / batched_seconds:.2f} questions/s")
    print(f"identical answers           {same}/{len(items)}")
    print(f"speed-up batched/one        {single_seconds / batched_seconds:.2f}x  (target >= 5x)")
    if same != len(items):
        sys.exit("answers differ between batched and one-at-a-time generation: the comparison is void")


if __name__ == "__main__":
    main()
