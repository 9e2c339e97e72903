"""Verdicts stored per second by the review store with 1 writer and with 8 concurrent writers, and their ratio.

    python bench/review.py                 # 400 verdicts per writer, separate processes, a fresh database in /tmp
    python bench/review.py --verdicts 1000 --threads

Each writer is a reviewer grading every prediction once through review.store (WAL, BEGIN IMMEDIATE, one commit per
verdict, as the Review tab stores them). Afterwards every verdict is counted: a lost one voids the run.
"""
import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from review.store import Store  # noqa: E402


def seed(path: Path, predictions: int, writers: int) -> None:
    store = Store(path)
    run = store.add_run("bench", "bench")
    for k in range(predictions):
        store.add_prediction(run, store.add_item("bench", f"q{k}", "yes", "CLOSED", image_hash=str(k)), "yes")
    for w in range(writers):
        store.add_reviewer(f"writer{w}", "-")
    store.close()


def grade_all(path: str, writer: int, predictions: int, store: Store | None = None) -> None:
    store = store or Store(path)
    reviewer = store.reviewer(f"writer{writer}")["id"]
    for p in range(1, predictions + 1):
        store.record_verdict(p, reviewer, "correct", request_id=f"{writer}:{p}")


def measure(writers: int, predictions: int, use_threads: bool) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        seed(path, predictions, writers)
        if use_threads:
            shared = Store(path)  # the app's way: one store, many request threads
            workers = [threading.Thread(target=grade_all, args=(str(path), w, predictions, shared)) for w in range(writers)]
        else:
            workers = [multiprocessing.Process(target=grade_all, args=(str(path), w, predictions)) for w in range(writers)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - start
        stored = Store(path).query("SELECT COUNT(*) FROM verdicts")[0][0]
        if stored != writers * predictions:
            sys.exit(f"lost verdicts: {stored} stored of {writers * predictions}")
        return writers * predictions / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verdicts", type=int, default=400, help="verdicts per writer")
    parser.add_argument("--threads", action="store_true", help="threads sharing one store instead of processes")
    args = parser.parse_args()
    kind = "threads" if args.threads else "processes"
    one = measure(1, args.verdicts, args.threads)
    eight = measure(8, args.verdicts, args.threads)
    print(f"writers           {kind}, {args.verdicts} verdicts each, none lost")
    print(f"1 writer          {one:.0f} verdicts/s")
    print(f"8 writers         {eight:.0f} verdicts/s")
    print(f"ratio 8 / 1       {eight / one:.2f}")


if __name__ == "__main__":
    main()
