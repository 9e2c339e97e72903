"""1 reviewer versus 8 at once: through the running app's API (the default), or straight into the review store.

    python bench/review.py                      # the app on a free port, 40 verdicts per reviewer: p50/p95 latency
    python bench/review.py --store              # medvlm.store alone: verdicts/s, 400 per writer, processes
    python bench/review.py --store --threads --verdicts 1000
    python bench/review.py --predictions 100000       # the next item's time at 1k predictions and at 100k
    python bench/review.py --api_predictions 100000 --verdicts 10   # through the API on a study of 100k answers

Next item: review.queue's read of a reviewer's next answer and progress (what each verdict in the Review tab costs
besides the write), on a store of 1,000 predictions and on one of --predictions, the reviewer having graded 200 of
each; the median of 200 reads and the ratio (target: within 2x).

API: `python app.py` runs on a fresh database in /tmp with 9 accounts; each reviewer signs in, reads the answer for
MIN_DWELL_S (the app refuses faster verdicts) and grades it through /grade_correct, as the Review tab does; the latency
is that call's round trip. Store: each writer grades every prediction once through medvlm.store (WAL, BEGIN IMMEDIATE,
one commit per verdict). Either way every verdict is counted afterwards: a lost one voids the run.
"""
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvlm import cli
from medvlm.store import Store

PASSWORD = "bench password"


def seed(path: Path, predictions: int, writers: int) -> None:
    """A store of one run with `predictions` answers, written in one transaction (single writes: minutes at 100k)."""
    from medvlm.store import insert, now, shuffle_key

    store = Store(path)
    run = store.add_run("bench", "bench")
    with store.write() as db:
        for k in range(predictions):
            item = insert(db, "items", {"dataset": "bench", "question": f"q{k}", "reference": "yes", "answer_type": "CLOSED",
                                        "image_hash": str(k)})
            insert(db, "predictions", {"run_id": run, "item_id": item, "answer": "yes", "created": now(), "shuffle": shuffle_key(run, item)})
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


def start_app(db: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = subprocess.Popen([sys.executable, "app.py", "--db", str(db), "--port", str(port)], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2)
            return app, url
        except OSError:
            if app.poll() is not None:
                sys.exit("the app exited while starting")
            time.sleep(1)
    app.kill()
    sys.exit("the app did not start in 4 minutes")


def judge_through_api(url: str, name: str, count: int, opening: tuple, judging: tuple) -> list[float]:
    """One reviewer's session: sign in, open the queue (endpoint, arguments), then read and judge `count` items
    (endpoint, arguments after the item's token and an empty note), as the Review and Arena tabs do; -> each
    judgement's round trip (s)."""
    from gradio_client import Client

    from ui.review_tab import MIN_DWELL_S

    client = Client(url, auth=(name, PASSWORD), verbose=False)

    def token(outputs) -> str:
        return next(v for v in outputs if isinstance(v, str) and re.fullmatch(r"\d+:\d+:\d+", v))

    shown, latencies = token(client.predict(*opening[1], api_name=opening[0])), []
    for _ in range(count):
        time.sleep(MIN_DWELL_S + 0.02)  # reading it
        start = time.perf_counter()
        outputs = client.predict(shown, "", *judging[1], api_name=judging[0])
        latencies.append(time.perf_counter() - start)
        if not any(isinstance(v, str) and v.startswith("Saved") for v in outputs):
            sys.exit(f"{name}: not saved: {outputs[-1]}")
        if len(latencies) < count:
            shown = token(outputs)
    return latencies


def review_through_api(url: str, name: str, verdicts: int) -> list[float]:
    return judge_through_api(url, name, verdicts, ("/open_review", ("all", "all")), ("/grade_correct", ("all", "all")))


def measure_api(verdicts: int, predictions: int) -> None:
    from review import users

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        seed(db, max(predictions, verdicts), 0)
        store = Store(db)
        for k in range(9):
            users.add(store, f"reviewer{k}", PASSWORD)
        store.close()
        app, url = start_app(db)
        try:
            one = review_through_api(url, "reviewer0", verdicts)
            with ThreadPoolExecutor(8) as pool:
                eight = [t for ts in pool.map(lambda k: review_through_api(url, f"reviewer{k}", verdicts), range(1, 9)) for t in ts]
        finally:
            app.terminate()
            app.wait(timeout=30)
        stored = Store(db).query("SELECT COUNT(*) FROM verdicts")[0][0]
        if stored != 9 * verdicts:
            sys.exit(f"lost verdicts: {stored} stored of {9 * verdicts}")

    def p95(values):
        return statistics.quantiles(values, n=20)[-1] * 1000

    print(f"through the app's API, {verdicts} verdicts per reviewer on {max(predictions, verdicts):,} predictions, none lost ({stored} stored)")
    print(f"1 reviewer        p50 {statistics.median(one) * 1000:.0f} ms, p95 {p95(one):.0f} ms")
    print(f"8 reviewers       p50 {statistics.median(eight) * 1000:.0f} ms, p95 {p95(eight):.0f} ms")
    print(f"p95 ratio 8 / 1   {p95(eight) / p95(one):.2f}")


def next_item_ms(predictions: int) -> float:
    from review import queue

    with tempfile.TemporaryDirectory() as folder:
        seed(Path(folder) / "bench.db", predictions, 0)
        return next_read_ms(Store(Path(folder) / "bench.db"), queue, lambda store, row, reviewer: store.record_verdict(
            row["prediction_id"], reviewer, "correct"))


def next_read_ms(store: Store, queue, judge) -> float:
    """A reviewer judges the first 200 entries of `queue` (review.queue or review.arena: pending and progress) with
    judge(store, row, reviewer); then the median time of reading their next entry and their progress. Closes store."""
    reviewer = store.add_reviewer("bench", "-")
    for row in queue.pending(store, reviewer, limit=200):
        judge(store, row, reviewer)
    took = median_ms(lambda: (queue.pending(store, reviewer), queue.progress(store, reviewer)))
    store.close()
    return took


def median_ms(read, rounds: int = 200) -> float:
    """The median time of `read()` over `rounds` calls, in milliseconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = cli.Parser("python bench/review.py", __doc__)
    parser.add_argument("--store", action="store_true", help="medvlm.store alone, not through the app")
    parser.add_argument("--verdicts", type=int, help="verdicts per reviewer (default: 40 through the API, 400 --store)")
    parser.add_argument("--threads", action="store_true", help="--store: threads sharing one store instead of processes")
    parser.add_argument("--predictions", type=int, help="time the next item at 1,000 predictions and at this many")
    parser.add_argument("--api_predictions", type=int, default=0, help="through the API: the store holds this many predictions")
    args = parser.parse_args()
    if args.predictions:
        small, large = next_item_ms(1000), next_item_ms(args.predictions)
        print(f"next item: {small:.2f} ms at 1,000 predictions, {large:.2f} ms at {args.predictions:,}: ratio {large / small:.2f} (target <= 2)")
        return
    if not args.store:
        measure_api(args.verdicts or 40, args.api_predictions)
        return
    args.verdicts = args.verdicts or 400
    kind = "threads" if args.threads else "processes"
    one = measure(1, args.verdicts, args.threads)
    eight = measure(8, args.verdicts, args.threads)
    print(f"writers           {kind}, {args.verdicts} verdicts each, none lost")
    print(f"1 writer          {one:.0f} verdicts/s")
    print(f"8 writers         {eight:.0f} verdicts/s")
    print(f"ratio 8 / 1       {eight / one:.2f}")


if __name__ == "__main__":
    main()
