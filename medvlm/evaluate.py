"""Answer a dataset's questions with a model and store the answers for review, scored automatically on the spot.

    python -m medvlm.evaluate --model medvlm-tiny --data ../shared/data/vqa-rad/vqa_rad.jsonl --split test --db medvlm.db
    python -m medvlm.evaluate --model medvlm-tiny --data labels:../shared/data/brain-tumor/data.yaml --split val --db medvlm.db
    python -m medvlm.evaluate --model llava-1.5-7b --adapter runs/pathvqa/adapter --data flaviagiammarino/path-vqa --limit 500

Generation is batched (medvlm.predict) and resumable: a rerun with the same model, adapter, data, split and prompt
settings continues the same run and skips the questions it already answered. Every closed question is also asked
about another image of the same set (medvlm.grounding); those answers are stored apart, never queued for review.
The strict scores of the whole run (medvlm.metrics), the closed accuracy with swapped images and its drop ("image
reliance"), and per-task scores of label questions are printed at the end; physicians grade the answers in the
app's Review tab.
"""
import argparse
import hashlib
import sys
import time
from pathlib import Path

from medvlm.settings import EVAL_MAX_NEW_TOKENS, MAX_NEW_TOKENS_LIMIT, apply_offline_env

apply_offline_env()

from medvlm import grounding, models  # noqa: E402
from medvlm.chat import GenerationSettings  # noqa: E402
from medvlm.data import load_examples  # noqa: E402
from medvlm.errors import UserFacingError  # noqa: E402
from medvlm.predict import answer_batch, with_instruction  # noqa: E402
from review.store import DEFAULT_DB, Store  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medvlm.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registered name, local folder or hub id")
    parser.add_argument("--adapter", help="PEFT adapter folder or hub id")
    parser.add_argument("--data", required=True, help="VQA JSONL, image folder with metadata.jsonl, hub dataset id, or "
                        "labels:PATH (questions from image labels)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"review database (default: {DEFAULT_DB})")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--max_new_tokens", type=int, default=EVAL_MAX_NEW_TOKENS)
    parser.add_argument("--long_answers", action="store_true", help="leave out the short-answer instruction")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1 or args.batch_size < 1 or not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
        parser.error(f"--limit and --batch_size must be >= 1, --max_new_tokens in 1..{MAX_NEW_TOKENS_LIMIT}")
    return args


def image_hash(example) -> str | None:
    if example.image_path:
        return hashlib.blake2b(Path(example.image_path).read_bytes(), digest_size=16).hexdigest()
    if example.inline_image is not None:
        return hashlib.blake2b(example.inline_image.tobytes(), digest_size=16).hexdigest()
    return None


def run_evaluation(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    store = Store(args.db)
    examples = load_examples(args.data, args.split, limit=args.limit).examples
    short_answer = not args.long_answers
    settings = {"short_answer": short_answer, "max_new_tokens": args.max_new_tokens, "temperature": 0.0}
    spec = models.resolve(args.model, adapter=args.adapter)
    run = store.find_run(spec.name, args.data, args.split, spec.adapter, settings)
    if run is None:
        run = store.add_run(spec.name, args.data, args.split, spec.adapter, settings)
    items = [store.add_item(args.data, e.question, e.answer, e.answer_type, image_ref=e.image_path or e.id,
                            image_hash=image_hash(e), task=e.task) for e in examples]
    done = store.predicted_items(run)
    todo = [(item, e) for item, e in zip(items, examples) if item not in done]
    closed_items = [item for item, e in zip(items, examples) if e.answer_type.upper() == "CLOSED"]
    swapped_done = store.swapped_items(run)
    swapped_todo = [(item, e) for item, e in zip(closed_items, grounding.swap_images(examples)) if item not in swapped_done]
    print(f"run {run}: {len(examples)} questions, {len(examples) - len(todo)} already answered", file=sys.stderr)
    loaded = None
    if todo or swapped_todo:
        device = None if args.device == "auto" else args.device
        loaded = models.load(spec, device or models.default_device())
        generation = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
        images: dict = {}
        with tqdm(total=len(todo), desc="evaluate", unit="q") as bar:
            for start in range(0, len(todo), args.batch_size):
                chunk = todo[start : start + args.batch_size]
                batch = []
                for _, example in chunk:
                    key = example.image_path or id(example)
                    if key not in images:
                        if len(images) >= 256:  # decoded scans are large: keep a bounded set
                            images.clear()
                        images[key] = example.image()
                    batch.append((images[key], with_instruction(example.question, short_answer)))
                began = time.perf_counter()
                answers = answer_batch(loaded, batch, generation, batch_size=args.batch_size)
                per_question = (time.perf_counter() - began) / len(chunk)
                for (item, _), answer in zip(chunk, answers):
                    tokens = len(loaded.tokenizer(answer, add_special_tokens=False).input_ids)
                    store.add_prediction(run, item, answer, latency_s=round(per_question, 4), tokens=tokens)
                bar.update(len(chunk))
    if swapped_todo:
        generation = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
        with tqdm(total=len(swapped_todo), desc="swapped images", unit="q") as bar:
            for start in range(0, len(swapped_todo), args.batch_size):
                chunk = swapped_todo[start : start + args.batch_size]
                answers = grounding.answer_examples(loaded, [e for _, e in chunk], short_answer, generation, args.batch_size)
                for (item, example), answer in zip(chunk, answers):
                    store.add_swapped_prediction(run, item, example.image_path or example.id, answer)
                bar.update(len(chunk))
    records = run_records(store, run)
    result = grounding.score(records) | {"run": run, "questions": sum(not r["swapped_image"] for r in records)}
    store.close()
    return result


def run_records(store: Store, run: int) -> list[dict]:
    """The run's answers as medvlm.grounding records: own image, then swapped images."""
    own = store.query("""SELECT p.answer, i.reference, i.answer_type, i.task FROM predictions p JOIN items i ON i.id = p.item_id
                         WHERE p.run_id = ?""", [run])
    swapped = store.query("""SELECT s.answer, i.reference, i.answer_type, i.task FROM swapped_predictions s
                             JOIN items i ON i.id = s.item_id WHERE s.run_id = ?""", [run])
    return [{"prediction": a, "answer": r or "", "answer_type": t, "task": task or "", "swapped_image": flag}
            for flag, rows in ((False, own), (True, swapped)) for a, r, t, task in rows]


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = run_evaluation(args)
    except UserFacingError as e:
        print(f"medvlm.evaluate: error: {e}", file=sys.stderr)
        return 2
    tasks = result.pop("tasks", {})
    for key, value in result.items():
        print(f"{key:<26}{value}")
    for task, scores in tasks.items():
        shown = scores["closed_accuracy"] if scores["closed_n"] else scores["open_recall"]
        kind = "closed accuracy" if scores["closed_n"] else "open recall"
        balanced = f", yes/no balanced {scores['yes_no_balanced_accuracy']}" if scores["yes_no_balanced_accuracy"] is not None else ""
        print(f"task {task:<21}{shown} ({kind}, n={scores['closed_n'] or scores['open_n']}{balanced})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
