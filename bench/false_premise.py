"""A false premise: every held-out tumour-type wording asked about every tumour-free brain-tumour val slice, for one or
more MedVLM-Tiny adapters side by side, through the Chat tab's path (medvlm.chat.stream_reply, greedy). No recipe asks
a tumour-free slice its type (only the yes/no form, answered "no"), so no evaluation scores it; a clinician who asks
"What sort of tumour is visible here?" about a healthy brain should not be told one.

    python bench/false_premise.py                                        # the shipped adapter, ~1 min on 2 cores
    python bench/false_premise.py --adapters medvlm/weights/medvlm-tiny-grounded runs/RUN/adapter
"""
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvlm import cli, labels, models, wordings  # noqa: E402
from medvlm.chat import GenerationSettings, stream_reply  # noqa: E402
from medvlm.images import load_image  # noqa: E402

SETTINGS = GenerationSettings(max_new_tokens=8, temperature=0.0)


def names_a_type(answer: str, kinds: list[str]) -> bool:
    """Whether the answer names a tumour type (any word of a class name: "pituitary" for "pituitary tumor")."""
    said = answer.lower()
    return any(word in said for kind in kinds for word in kind.split() if word != "tumor")


def main() -> None:
    parser = cli.Parser("python bench/false_premise.py", __doc__)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "brain-tumor" / "data.yaml"))
    parser.add_argument("--adapters", nargs="+", default=[None], help="adapter folders (default: the shipped one)")
    args = parser.parse_args()
    names, found = labels.yolo_images(Path(args.data), keys=("val",))
    kinds = [labels.TUMOR_NAMES.get(n, n) for n in names]
    free = [path for path, boxes in found["val"] if not boxes]
    asked = wordings.wordings("tumor_type", wordings.HELDOUT)
    print(f"{len(free)} tumour-free val slices x {len(asked)} held-out type wordings; a type named is wrong")
    for adapter in args.adapters:
        spec = models.resolve("medvlm-tiny")
        loaded = models.load(spec if adapter is None else replace(spec, adapter=adapter), device="cpu")
        said, named = Counter(), 0
        for wording in asked:
            for path in free:
                *_, answer = stream_reply(loaded, [], wording.text, load_image(path), SETTINGS)  # the last is final
                said[str(answer)] += 1
                named += names_a_type(str(answer), kinds)
        total = len(free) * len(asked)
        print(f"{adapter or 'shipped'}: a type named {named} of {total} ({100 * named / total:.1f} %); answers: "
              + ", ".join(f"{a!r} {n}" for a, n in said.most_common()), flush=True)


if __name__ == "__main__":
    main()
