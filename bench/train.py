"""MedVLM-Tiny training throughput and peak memory, and batched evaluation against one question at a time.

    python bench/train.py                    # 8 training steps (rows packed and augmented as train.vlm does); 48 test questions
    python bench/train.py --questions 96 --eval_batch 16

Prints training samples/s and peak resident memory on this machine, then the ratio of a one-question-at-a-time
loop (the way the original notebooks scored: one model.generate per question) to our batched evaluation
(medvlm.predict: questions about one image share the prefix), on the same model and questions, under greedy
decoding (target >= 5x). The answers must be identical, or the comparison is void.
"""
import dataclasses
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from medvlm import cli, models
from medvlm.data import load_examples
from medvlm.predict import SCORING, DecodedImages, answer_examples
from medvlm.settings import PACK_SIZE
from train import vlm

VQA_RAD = Path(__file__).resolve().parents[2] / "shared/data/vqa-rad/vqa_rad.jsonl"


def main() -> None:
    parser = cli.Parser("python bench/train.py", __doc__)
    parser.add_argument("--data", default=str(VQA_RAD))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=vlm.TrainArguments.batch_size)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--eval_batch", type=int, default=16)
    parser.add_argument("--no_augment", dest="augment", action="store_false", default=vlm.DataArguments.augment,
                        help="train without train.vlm's augmentation (a new view of each image per draw)")
    parser.add_argument("--adapter", help="evaluate with this adapter (default: the registry's medvlm-tiny)")
    args = parser.parse_args()

    # Training throughput, the same code path as python -m train.vlm.
    base = dataclasses.replace(models.REGISTRY["medvlm-tiny"], adapter=None)  # a fresh LoRA on the bare base
    loaded = models.load(base, device="cpu")
    examples = load_examples(args.data, "train").examples
    dataset = vlm.ImagePackedDataset(loaded, [(examples, 1.0)], short_answer=True, max_branches=PACK_SIZE, augment=args.augment,
                                   follow_ups=vlm.DataArguments.follow_ups)
    loaded.tokenizer.padding_side = "right"
    model = vlm.add_lora(loaded, vlm.LoraArguments(), quantized=False, checkpointing=False)
    optimizer = vlm.make_optimizer(model, loaded.family.lora_lr, vlm.TrainArguments.projector_lr, paged_8bit=False)
    model.train()
    vlm.freeze_batchnorm(model)
    pad = loaded.tokenizer.pad_token_id
    rows = args.steps * args.batch_size
    for i in range(rows):
        dataset[i]  # tokenised once per run, as in train.vlm: not part of the per-step cost (an augmented view is)
    samples, start = 0, time.perf_counter()
    for s in range(0, rows, args.batch_size):
        batch = vlm.collate(pad)([dataset[i] for i in range(s, s + args.batch_size)])
        samples += int(batch["examples"])
        loss = vlm.answer_loss(model, batch)
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
    images = DecodedImages(limit=len(questions))
    for example in questions:  # decoded before either timing starts
        images(example)
    answer_examples(evaluator, questions[:2], SCORING, batch_size=2, images=images)  # warm-up, both paths
    answer_examples(evaluator, questions[:2], SCORING, batch_size=1, images=images, share_prefix=False)
    start = time.perf_counter()
    one_at_a_time = answer_examples(evaluator, questions, SCORING, batch_size=1, images=images, share_prefix=False)
    single_seconds = time.perf_counter() - start
    start = time.perf_counter()
    batched = answer_examples(evaluator, questions, SCORING, batch_size=args.eval_batch, images=images)
    batched_seconds = time.perf_counter() - start
    same = sum(a == b for a, b in zip(one_at_a_time, batched))

    print(f"model                       {spec.name}{' + ' + spec.adapter if spec.adapter else ''}, cpu, {torch.get_num_threads()} threads")
    augmented = ", augmented" if args.augment else ", not augmented"
    print(f"training                    {samples} samples in {train_seconds:.1f} s = {samples / train_seconds:.2f} samples/s "
          f"({args.steps} steps of {args.batch_size} rows{augmented})")
    print(f"peak resident memory        {peak_gb:.2f} GB")
    print(f"evaluation, one at a time   {len(questions) / single_seconds:.2f} questions/s")
    print(f"evaluation, batched ({args.eval_batch:>3})   {len(questions) / batched_seconds:.2f} questions/s")
    print(f"identical answers           {same}/{len(questions)}")
    print(f"speed-up batched/one        {single_seconds / batched_seconds:.2f}x  (target >= 5x)")
    if same != len(questions):
        sys.exit("answers differ between batched and one-at-a-time generation: the comparison is void")


if __name__ == "__main__":
    main()
