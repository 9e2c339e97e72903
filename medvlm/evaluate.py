"""Answer a dataset's questions with a model and store the answers for review, scored automatically on the spot.

    python -m medvlm.evaluate --model medvlm-tiny --data ../shared/data/vqa-rad/vqa_rad.jsonl --split test --db medvlm.db
    python -m medvlm.evaluate --model medvlm-tiny --data labels:../shared/data/brain-tumor/data.yaml --split val --db medvlm.db
    python -m medvlm.evaluate --model llava-1.5-7b --adapter runs/pathvqa/adapter --data flaviagiammarino/path-vqa --limit 500
    python -m medvlm.evaluate --model openai:http://gpu-box:8000/v1 --served_model pathvqa --data ... --concurrency 16

Generation is batched (medvlm.predict; a served model gets --concurrency requests at once) and resumable: a rerun
with the same model, adapter, data, split and prompt settings continues the same run and skips the questions it
already answered. Every closed question is also asked about another image of the same set (medvlm.grounding); those
answers are stored apart, never queued for review.
The strict scores of the whole run (medvlm.metrics), the closed accuracy with swapped images and its drop ("image
reliance"), and per-task scores of label questions are printed at the end; physicians grade the answers in the
app's Review tab.
"""
import argparse
import sys
import time

from medvlm import cli, grounding, models
from medvlm.data import load_examples
from medvlm.settings import EVAL_MAX_NEW_TOKENS, MAX_NEW_TOKENS_LIMIT, REMOTE_CONCURRENCY
from medvlm.store import Store

PROG = "python -m medvlm.evaluate"


def parse_args(argv=None) -> argparse.Namespace:
    parser = cli.Parser(PROG, __doc__)
    cli.add_model_arguments(parser, default=None)
    parser.add_argument("--data", required=True, help="VQA JSONL, image folder with metadata.jsonl, hub dataset id, or "
                        "labels:PATH (questions from image labels)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    cli.add_db_argument(parser)
    parser.add_argument("--batch_size", type=int, default=16, help="questions per batch (a batch is stored at once)")
    parser.add_argument("--concurrency", type=int, default=REMOTE_CONCURRENCY,
                        help=f"with --model openai:URL: requests in flight at once (default: {REMOTE_CONCURRENCY})")
    parser.add_argument("--max_new_tokens", type=int, default=EVAL_MAX_NEW_TOKENS)
    parser.add_argument("--long_answers", action="store_true", help="leave out the short-answer instruction")
    args = parser.parse_args(argv)
    parser.check({"--limit": args.limit is not None and args.limit < 1, "--batch_size": args.batch_size < 1,
                  "--concurrency": not 1 <= args.concurrency <= 256, "--max_new_tokens": not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS_LIMIT})
    return args


def run_evaluation(args: argparse.Namespace) -> dict:
    # Generation (torch, transformers) is imported here, not above, so that a mistyped flag answers in a moment.
    from tqdm import tqdm

    from medvlm.chat import GenerationSettings
    from medvlm.predict import DecodedImages, answer_examples
    from medvlm.remote import RemoteModel

    spec = cli.model_spec(args)
    store = Store(args.db)
    examples = load_examples(args.data, args.split, limit=args.limit).examples
    short_answer = not args.long_answers
    settings = {"short_answer": short_answer, "max_new_tokens": args.max_new_tokens, "temperature": 0.0}
    run = store.find_run(spec.name, args.data, args.split, spec.adapter, settings)
    if run is None:
        run = store.add_run(spec.name, args.data, args.split, spec.adapter, settings)
    images = DecodedImages()
    items = [store.add_item(args.data, e.question, e.answer, e.answer_type, image_ref=e.image_path or e.id,
                            image_hash=images.fingerprint(e) if e.image_key is not None else None, task=e.task,
                            fact=e.fact, wording=e.wording, reversed=e.reversed)
             for e in examples]
    done = store.predicted_items(run)
    todo = [(item, e) for item, e in zip(items, examples) if item not in done]
    closed_items = [item for item, e in zip(items, examples) if e.answer_type.upper() == "CLOSED"]
    swapped_done = store.swapped_items(run)
    swapped_todo = [(item, e) for item, e in zip(closed_items, grounding.swap_images(examples)) if item not in swapped_done]
    blind_done = store.blind_questions(run)
    blind_todo = [(None, e) for e in grounding.without_images(examples) if e.question not in blind_done]
    print(f"run {run}: {len(examples)} questions, {len(examples) - len(todo)} already answered", file=sys.stderr)
    if todo or swapped_todo or blind_todo:
        loaded = models.load(spec, cli.device_of(args), args.quantize)
        generation = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)
        tokenizer = loaded.tokenizer  # None for a served model: its server counts tokens
        # Questions stored at once: a served model keeps --concurrency requests in flight within a batch.
        chunk_size = max(args.batch_size, args.concurrency) if isinstance(loaded, RemoteModel) else args.batch_size
        # Stored a batch at a time: a killed run resumes from the last stored batch.
        for desc, pending, save in (
            ("evaluate", todo, lambda item, e, answer, seconds: store.add_prediction(
                run, item, answer, latency_s=round(seconds, 4),
                tokens=len(tokenizer(answer, add_special_tokens=False).input_ids) if tokenizer else None,
                p_yes=getattr(answer, "p_yes", None))),
            ("swapped images", swapped_todo, lambda item, e, answer, seconds: store.add_swapped_prediction(
                run, item, e.image_path or e.id, answer)),
            ("no image", blind_todo, lambda item, e, answer, seconds: store.add_blind_prediction(run, e.question, answer)),
        ):
            with tqdm(total=len(pending), desc=desc, unit="q") as bar:
                for start in range(0, len(pending), chunk_size):
                    chunk = pending[start : start + chunk_size]
                    began = time.perf_counter()
                    answers = answer_examples(loaded, [e for _, e in chunk], generation, args.batch_size, short_answer, images=images,
                                              concurrency=args.concurrency)
                    per_question = (time.perf_counter() - began) / len(chunk)
                    for (item, example), answer in zip(chunk, answers):
                        save(item, example, answer, per_question)
                    bar.update(len(chunk))
    records = run_records(store, run)
    result = grounding.score(records) | {"run": run, "questions": sum(not r["swapped_image"] and not r.get("no_image") for r in records)}
    store.close()
    return result


ITEM_COLUMNS = "i.id, i.question, i.reference, i.answer_type, i.task, i.image_hash, i.fact, i.wording, i.reversed"


def run_records(store: Store, run: int) -> list[dict]:
    """The run's answers as medvlm.grounding records: own image, then swapped images, then no image."""
    def records(rows, **flags):
        return [{"id": item, "question": question, "answer": reference or "", "answer_type": answer_type, "task": task or "",
                 "image": image, "prediction": answer, "swapped_image": False} | flags
                | ({"fact": fact, "wording": wording, "reversed": bool(reversed)} if fact else {})
                | ({"p_yes": p_yes} if p_yes is not None else {})
                for item, question, reference, answer_type, task, image, fact, wording, reversed, answer, p_yes in rows]

    own = store.query(f"""SELECT {ITEM_COLUMNS}, p.answer, p.p_yes FROM predictions p JOIN items i ON i.id = p.item_id
                          WHERE p.run_id = ?""", [run])
    swapped = store.query(f"""SELECT {ITEM_COLUMNS}, s.answer, NULL FROM swapped_predictions s JOIN items i ON i.id = s.item_id
                              WHERE s.run_id = ?""", [run])
    blind = store.query("SELECT question, answer FROM blind_predictions WHERE run_id = ?", [run])
    return (records(own) + records(swapped, swapped_image=True)
            + [{"question": q, "prediction": a, "answer": "", "answer_type": "CLOSED", "no_image": True, "swapped_image": False}
               for q, a in blind])


def main(argv=None) -> int:
    args = parse_args(argv)
    return cli.run(PROG, lambda: print_result(run_evaluation(args)))


def print_result(result: dict) -> None:
    tasks = result.pop("tasks", {})
    calibration = result.pop("calibration", None)
    for key, value in result.items():
        print(f"{key:<26}{value}")
    if calibration:
        print(f"{'yes/no calibration':<26}ECE {calibration['ece']:.3f} over {calibration['n']} answers")
    for line in grounding.task_lines(tasks):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
