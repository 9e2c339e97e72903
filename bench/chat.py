"""Chat-path speed of MedVLM-Tiny on this machine, against a plain model.generate on the same prompt.

    python bench/chat.py                 # 5 interleaved rounds, 64 new tokens, a VQA-RAD head CT
    python bench/chat.py --rounds 9 --max_new_tokens 128

Prints load time, time to first token, tokens/s, and ratio = our chat path / plain generate (target <= 1.10).
Our path includes everything a chat turn does (question check, prompt building, processor, streamer thread);
plain generate gets pre-encoded inputs. Rounds alternate A/B so machine noise hits both alike; medians reported.
Greedy decoding: both must produce the same tokens, or the comparison is void.
"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from medvlm import cli, models
from medvlm.chat import GenerationSettings, encode_to_fit, generate_kwargs, stream_reply
from medvlm.images import load_image

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared/data/vqa-rad/images/synpic54610.jpg"
QUESTION = "Describe the findings in this image."


def main() -> None:
    parser = cli.Parser("python bench/chat.py", __doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())

    start = time.perf_counter()
    loaded = models.load(models.resolve("medvlm-tiny"), device="cpu")
    load_seconds = time.perf_counter() - start
    image = load_image(args.image)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0)

    def ours():
        start = time.perf_counter()
        first = None
        for answer in stream_reply(loaded, [], QUESTION, image, settings):
            if first is None and answer:
                first = time.perf_counter() - start
        return time.perf_counter() - start, first, answer

    def plain():
        inputs = encode_to_fit(loaded, [], QUESTION, image, settings.max_new_tokens)
        kwargs = generate_kwargs(loaded, inputs, settings)
        start = time.perf_counter()
        with torch.inference_mode():
            output = loaded.model.generate(**kwargs)
        seconds = time.perf_counter() - start
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        return seconds, len(new_tokens), loaded.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    ours(), plain()  # warm-up: first-call allocations and thread pools
    ours_times, first_token_times, plain_times = [], [], []
    for _ in range(args.rounds):
        seconds, first, our_answer = ours()
        ours_times.append(seconds)
        first_token_times.append(first)
        seconds, token_count, plain_answer = plain()
        plain_times.append(seconds)
        if our_answer != plain_answer:
            sys.exit(f"answers differ under greedy decoding:\n ours:  {our_answer!r}\n plain: {plain_answer!r}")

    ours_median, plain_median = statistics.median(ours_times), statistics.median(plain_times)
    print(f"model                 medvlm-tiny on cpu, {torch.get_num_threads()} threads")
    print(f"load (cached base)    {load_seconds:.2f} s")
    print(f"time to first token   {statistics.median(first_token_times):.3f} s (median of {args.rounds})")
    print(f"new tokens            {token_count} (answers identical: yes)")
    print(f"tokens/s, chat path   {token_count / ours_median:.1f}")
    print(f"tokens/s, plain       {token_count / plain_median:.1f}")
    print(f"ratio chat/plain      {ours_median / plain_median:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
