"""Does an earlier turn change the answer? Held-out brain-tumour questions asked alone and as the second turn of a
Chat conversation (after the model's own answer to a lead question about the same slice), through the Chat tab's path
(medvlm.chat.stream_reply, greedy, the tab's token limit), for one or more MedVLM-Tiny adapters side by side.

    python bench/follow_up.py                                   # the shipped adapter, 12 tumour-free + 12 tumour val slices
    python bench/follow_up.py --adapters medvlm/weights/medvlm-tiny-grounded runs/RUN/adapter --slices 30

A clinician's second question is as much the question as their first: an answer that flips because something was
asked before it is no answer. The leads are what a clinician opens with (the last, a presence question itself, is a
training wording); the follow-ups are held-out wordings, the first three plain and the first reversed ("normal?").
"""
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvlm import cli, labels, metrics, models, wordings  # noqa: E402
from medvlm.chat import GenerationSettings, stream_reply  # noqa: E402
from medvlm.images import load_image  # noqa: E402
from medvlm.settings import DEFAULT_MAX_NEW_TOKENS  # noqa: E402

# "Is there a tumour?": the Chat walkthrough found a reversed follow-up copying two earlier "no"s on a tumour-free
# slice (right alone), so a yes/no lead about the finding itself is asked too.
LEADS = ("What kind of scan is this?", "Describe this image.", "Is this an MRI?", "Is there a tumour?")
SETTINGS = GenerationSettings(max_new_tokens=DEFAULT_MAX_NEW_TOKENS, temperature=0.0)


def reply(loaded, history, question, image) -> str:
    *_, answer = stream_reply(loaded, history, question, image, SETTINGS)  # the last value is the final answer
    return str(answer)


def main() -> None:
    parser = cli.Parser("python bench/follow_up.py", __doc__)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "brain-tumor" / "data.yaml"))
    parser.add_argument("--adapters", nargs="+", default=[None], help="adapter folders (default: the shipped one)")
    parser.add_argument("--slices", type=int, default=12, help="tumour-free and tumour val slices, this many of each")
    args = parser.parse_args()
    if args.slices < 1:
        parser.error("out of range: --slices (see --help)")
    val = labels.yolo_images(Path(args.data), keys=("val",))[1]["val"]
    slices = [s for s in val if not s[1]][:args.slices] + [s for s in val if len(s[1]) == 1][:args.slices]
    presence = wordings.wordings("tumor_presence", wordings.HELDOUT, reversed=False)[:3] + \
        wordings.wordings("tumor_presence", wordings.HELDOUT, reversed=True)[:1]
    print(f"{len(slices)} val slices; follow-ups: " + "; ".join(w.text for w in presence) + f"; leads: {'; '.join(LEADS)}")
    for adapter in args.adapters:
        spec = models.resolve("medvlm-tiny")
        loaded = models.load(spec if adapter is None else replace(spec, adapter=adapter), device="cpu")
        right = {lead: 0 for lead in (None,) + LEADS}
        right_reversed = dict.fromkeys(right, 0)
        for path, boxes in slices:
            image = load_image(path)
            history = {None: []} | {lead: [(lead, reply(loaded, [], lead, image))] for lead in LEADS}
            for wording in presence:
                truth = "yes" if bool(boxes) != wording.reversed else "no"
                for lead in right:
                    correct = metrics.closed_correct(reply(loaded, history[lead], wording.text, image), truth)
                    right[lead] += correct
                    right_reversed[lead] += correct * wording.reversed
        asked = len(slices) * len(presence)
        asked_reversed = len(slices) * sum(w.reversed for w in presence)
        shown = ", ".join(f"after {lead!r} {100 * n / asked:.1f}" for lead, n in right.items() if lead)
        shown_reversed = ", ".join(f"after {lead!r} {100 * n / asked_reversed:.1f}" for lead, n in right_reversed.items() if lead)
        print(f"{adapter or 'shipped'}: presence right alone {100 * right[None] / asked:.1f} % of {asked}; {shown}. "
              f"Reversed alone {100 * right_reversed[None] / asked_reversed:.1f} % of {asked_reversed}; {shown_reversed}", flush=True)


if __name__ == "__main__":
    main()
