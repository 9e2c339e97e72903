"""The arena's leaderboard fit at study scale, and votes through the running app from 8 reviewers at once.

    python bench/arena.py                       # 20,000 battles among 12 models, 500 bootstrap rounds; 8 voters
    python bench/arena.py --battles 50000 --models 20 --rounds 1000 --skip_api
    python bench/arena.py --next_pair 100000    # the next pair's time at 1,000 pairs and at 100,000

Fit: medvlm.leaderboard.leaderboard (one Bradley-Terry fit plus `rounds` bootstrap fits) on battles simulated from
known strengths; printed are the single fit's time, the whole leaderboard's (target: under 2 s for the default sizes)
and their ratio, and how far the scores land from the strengths they were drawn from.

Next pair: review.arena's read of a reviewer's next pair and progress, on arenas of 1,000 pairs and --next_pair pairs
(3 models, so 3 lanes), the reviewer having voted on 200; the median of 200 reads and the ratio (target: within 2x).

API: `python app.py` on a fresh database in /tmp holding one dataset arena (two runs, `--pairs` items); 8 reviewers
sign in and vote through /arena_vote_a at once, each waiting out MIN_DWELL_S as a reader would; afterwards every vote
is counted in the store: a lost one voids the run.
"""
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.review import PASSWORD, judge_through_api, next_read_ms, start_app
from medvlm import cli, leaderboard
from medvlm.leaderboard import Battle
from medvlm.store import Store

REVIEWERS = 8


def simulated(models: int, battles: int, seed: int = 0) -> tuple[dict[str, float], list[Battle]]:
    rng = random.Random(seed)
    truth = {f"model-{k:02d}": 1000 + 40 * k for k in range(models)}
    names, out = sorted(truth), []
    for _ in range(battles):
        a, b = rng.sample(names, 2)
        # No ties drawn apart from strength: they would pull every score toward the middle and hide the check below.
        out.append(Battle(a, b, "a" if rng.random() < 1 / (1 + 10 ** ((truth[b] - truth[a]) / 400)) else "b"))
    return truth, out


def bench_fit(models: int, battles: int, rounds: int) -> None:
    truth, drawn = simulated(models, battles)
    anchor = min(truth)
    single = []
    for _ in range(5):
        start = time.perf_counter()
        scores = leaderboard.bradley_terry(drawn, anchor)
        single.append(time.perf_counter() - start)
    start = time.perf_counter()
    rows = leaderboard.leaderboard(drawn, anchor, rounds=rounds)
    whole = time.perf_counter() - start
    covered = sum(r["ci95"][0] <= truth[r["model"]] <= r["ci95"][1] for r in rows)
    worst = max(abs(scores[m] - truth[m]) for m in truth)
    print(f"fit: {battles} battles, {models} models: one fit {statistics.median(single) * 1000:.1f} ms; "
          f"leaderboard with {rounds} bootstrap rounds {whole:.2f} s (target < 2 s) = "
          f"{whole / statistics.median(single):.0f}x one fit")
    print(f"     scores within {worst:.0f} points of the strengths drawn from; {covered}/{models} intervals cover them")


def bench_api(pairs: int, votes: int) -> None:
    from review import arena, users

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        store = Store(db)
        runs = [store.add_run(model, "bench") for model in ("model-a", "model-b")]
        for k in range(pairs):
            item = store.add_item("bench", f"q{k}", "yes", "CLOSED", image_hash=str(k))
            for run, answer in zip(runs, ("yes", "no")):
                store.add_prediction(run, item, answer)
        arena.enter_runs(store, runs)
        for k in range(REVIEWERS):
            users.add(store, f"reviewer{k}", PASSWORD)
        store.close()
        app, url = start_app(db)
        try:
            def voter(k: int) -> list[float]:
                return judge_through_api(url, f"reviewer{k}", votes, ("/open_arena", ()), ("/vote_a", ()))

            with ThreadPoolExecutor(REVIEWERS) as pool:
                latencies = [t for ts in pool.map(voter, range(REVIEWERS)) for t in ts]
        finally:
            app.terminate()
            app.wait(timeout=30)
        stored = Store(db).query("SELECT COUNT(*) FROM arena_votes")[0][0]
    if stored != REVIEWERS * votes:
        sys.exit(f"lost votes: {stored} stored of {REVIEWERS * votes}")
    print(f"API: {REVIEWERS} reviewers at once, {votes} votes each on a {pairs}-pair arena, none lost ({stored} stored); "
          f"per vote p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {statistics.quantiles(latencies, n=20)[-1] * 1000:.0f} ms")


def next_pair_ms(pairs: int) -> float:
    from medvlm.store import insert, now, shuffle_key
    from review import arena

    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.db")
        runs = [store.add_run(model, "bench") for model in ("model-a", "model-b", "model-c")]
        lanes = [(runs[0], runs[1]), (runs[0], runs[2]), (runs[1], runs[2])]
        with store.write() as db:  # one transaction: single writes would take minutes
            for k in range(pairs):
                item = insert(db, "items", {"dataset": "bench", "question": f"q{k}", "reference": "yes", "answer_type": "CLOSED",
                                            "image_hash": str(k)})
                a, b = (insert(db, "predictions", {"run_id": run, "item_id": item, "answer": "yes", "created": now(),
                                                   "shuffle": shuffle_key(run, item)}) for run in lanes[k % 3])
                insert(db, "arena_pairs", {"item_id": item, "a_prediction": a, "b_prediction": b, "created": now(),
                                           "shuffle": shuffle_key(a, b), "turn": k // 3})
        return next_read_ms(store, arena, lambda store, row, reviewer: store.record_vote(row["pair_id"], reviewer, "a"))


def main() -> None:
    parser = cli.Parser("python bench/arena.py", __doc__)
    parser.add_argument("--battles", type=int, default=20000)
    parser.add_argument("--models", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=1000, help="API: pairs in the arena")
    parser.add_argument("--votes", type=int, default=30, help="API: votes per reviewer")
    parser.add_argument("--skip_api", action="store_true", help="the fit only, no app")
    parser.add_argument("--next_pair", type=int, help="only time the next pair at 1,000 pairs and at this many")
    args = parser.parse_args()
    if args.next_pair:
        small, large = next_pair_ms(1000), next_pair_ms(args.next_pair)
        print(f"next pair: {small:.2f} ms at 1,000 pairs, {large:.2f} ms at {args.next_pair:,}: ratio {large / small:.2f} (target <= 2)")
        return
    bench_fit(args.models, args.battles, args.rounds)
    if not args.skip_api:
        bench_api(args.pairs, args.votes)


if __name__ == "__main__":
    main()
