"""medvlm.serve against in-process answers: requests/s and time to first token with 1 and with 8 concurrent clients.

    python bench/serve.py                          # 32 VQA-RAD questions, streamed, 64 new tokens at most
    python bench/serve.py --questions 48 --clients 8 --max_new_tokens 128
    python bench/serve.py --bare_base              # MedVLM-Tiny without its adapter: long answers, decoding-bound

One in-process MedVLM-Tiny answers the questions one after another (medvlm.chat.stream_reply, as the app's chat
does); then a real `python -m medvlm.serve` on localhost answers the same questions streamed through medvlm.remote,
from 1 client and from --clients at once (the server decodes what arrives together in one batch). Greedy: every
path must give the same answers, or the timings are void. Prints requests/s, median time to first token, and two
ratios: server overhead at 1 client (in-process req/s / server req/s, target <= 1.15) and the batching gain
(req/s with --clients / with 1, target >= 2). Server and clients share this machine's cores.
"""
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from medvlm import chat, cli, models
from medvlm.chat import GenerationSettings
from medvlm.data import load_examples

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/vqa-rad/vqa_rad.jsonl"


def timed(answer_stream) -> tuple[str, float, float]:
    """(final answer, seconds to the first piece, seconds in all) of a stream of growing answers."""
    start, first, text = time.perf_counter(), None, ""
    for piece in answer_stream:
        text, first = piece, first or time.perf_counter() - start
    return text, first or time.perf_counter() - start, time.perf_counter() - start


def run_clients(ask, requests: list, clients: int) -> tuple[list, float]:
    """Every request answered by `clients` threads at once -> ([(answer, ttft, total)] in order, wall seconds)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(ask, requests))
    return results, time.perf_counter() - start


def start_server(model: str, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MEDVLM_SERVE_API_KEY"}
    process = subprocess.Popen([sys.executable, "-m", "medvlm.serve", "--model", model, "--served_name", "bench", "--port", str(port)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(360):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1, trust_env=False)
            return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("python bench/serve.py: error: the server did not start")


def main() -> None:
    parser = cli.Parser("python bench/serve.py", __doc__)
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--bare_base", action="store_true",
                        help="MedVLM-Tiny's base without its adapter: it answers at length, so decoding dominates")
    args = parser.parse_args()
    parser.check({"--questions": args.questions < 2, "--clients": args.clients < 2, "--max_new_tokens": args.max_new_tokens < 1})

    examples = load_examples(str(DATA), "test", limit=args.questions).examples
    requests = [(e.image(), e.question) for e in examples]
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)

    model = "medvlm-tiny"
    if args.bare_base:
        from medvlm.models.tiny import base_model_dir

        model = str(base_model_dir())
    loaded = models.load(models.resolve(model), device="cpu")
    def ask_here(request):
        image, question = request
        return timed(chat.stream_reply(loaded, [], question, image, settings))

    ask_here(requests[0])  # warm-up
    here, here_s = run_clients(ask_here, requests, 1)
    loaded.model = None  # the server loads its own copy (the tokenizer stays, to count answer tokens)

    process = start_server(model, args.port)
    try:
        served = models.load(models.resolve(f"openai:http://127.0.0.1:{args.port}/v1", served_model="bench", api_key=""))

        def ask(request):
            image, question = request
            return timed(served.stream([(question, None)], image, settings))

        ask(requests[0])  # warm-up
        one, one_s = run_clients(ask, requests, 1)
        many, many_s = run_clients(ask, requests, args.clients)
    finally:
        process.terminate()
        process.wait(timeout=30)

    n = len(requests)
    same = [a[0] == b[0] == c[0] for a, b, c in zip(here, one, many)]
    tokens = statistics.mean(len(loaded.tokenizer(r[0]).input_ids) for r in here)
    print(f"{model}: {n} questions, {tokens:.1f} answer tokens on average (at most {args.max_new_tokens}), streamed")
    print(f"answers identical on all paths: {sum(same)}/{n}")
    for label, results, seconds in (("in-process, 1 client", here, here_s), ("server, 1 client", one, one_s),
                                     (f"server, {args.clients} clients", many, many_s)):
        ttft = statistics.median(r[1] for r in results)
        print(f"{label:24s} {n / seconds:6.2f} requests/s   median time to first token {ttft:.2f} s")
    print(f"server overhead at 1 client: {(n / here_s) / (n / one_s):.2f}x (target <= 1.15)")
    print(f"batching gain, {args.clients} clients / 1: {(n / many_s) / (n / one_s):.2f}x (target >= 2)")


if __name__ == "__main__":
    main()
