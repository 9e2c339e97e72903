"""Tumour presence asked in wordings that are in neither the training nor the held-out list (medvlm.wordings), about
every brain-tumour val slice, for one or more MedVLM-Tiny adapters side by side. Issue 22's maintainers check with
wordings they do not list; a recipe chosen on the held-out list alone can learn that list's neighbourhood, so this is
the check no run has been chosen on. Any wording added to either list must be replaced here.

    python bench/fresh_wordings.py medvlm/weights/medvlm-tiny-grounded runs/RUN/adapter    # ~7 min per adapter, 2 cores
"""
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reliance_mix import DATA, adapter_folders, adapters_scored  # noqa: E402  (bench/, this script's folder)

from medvlm import wordings  # noqa: E402
from medvlm.chat import GenerationSettings  # noqa: E402
from medvlm.data import load_examples  # noqa: E402

# (wording, reversed: its answer flips). The first seven found runs/tiny-any-wording's "lesion"/"abnormal" -> "no"
# (f0aaee5's recipe answers it); of the next five, "Does this MRI look abnormal to you?" found that no plain training
# wording asked the image's state; the next four were written with the state frames and scored on runs/tiny-balanced,
# whose failures ("...look abnormal to you?" 7.8, "Can you spot a growth?" 58.9) chose the state pairs; the last five
# were written with the state pairs, before any run of them was scored, so they stay a check nothing was chosen on;
# the last six, with fillers of their own, were written with medvlm.wordings' training fillers (FILLER_PREFIXES,
# FILLER_SUFFIXES), before any run of them was scored: whether words that change nothing are read as cues.
FRESH = (("Does the scan show any lesion at all?", False), ("Do you see anything abnormal in the brain?", False),
         ("Can a tumour be seen on this MRI?", False), ("Are there any abnormal findings?", False),
         ("Would you say a tumour is there?", False), ("Do you see a mass lesion?", False),
         ("Is everything normal here?", True),
         ("Is there any pathology visible?", False), ("Does this MRI look abnormal to you?", False),
         ("Is there something wrong in this brain?", False), ("Can you spot a growth?", False),
         ("Would you describe this scan as unremarkable?", True),  # "Would you call this scan unremarkable?" is trained now
         ("Does the image suggest a tumour?", False), ("Is there a suspicious area on this scan?", False),
         ("Are there any worrying findings?", False), ("Is this brain scan clean?", True),
         ("Would you say this scan looks abnormal?", False), ("Does this brain look normal to you?", True),
         ("Is a tumour visible anywhere?", False), ("Can you find a growth here?", False),
         ("Is this a healthy-looking brain?", True),
         ("Is there, by any chance, a tumour in this brain?", False), ("Do you happen to see a mass here?", False),
         ("Just checking: does this brain look normal?", True), ("Does the MRI show any abnormality whatsoever?", False),
         ("Could there be a growth on this scan, do you think?", False), ("Frankly, is this scan free of anything worrying?", True))
SETTINGS = GenerationSettings(max_new_tokens=8, temperature=0.0)


def listed() -> set[str]:
    """Every training and held-out presence wording, in the form under which two wordings are the same."""
    return {wordings.normalize(w.text) for split in (wordings.TRAIN, wordings.HELDOUT) for flip in (False, True)
            for w in wordings.wordings("tumor_presence", split, reversed=flip)}


def fresh_examples() -> list:
    """Each val slice once (its first held-out presence example), asked each fresh wording."""
    slices = {}
    for e in load_examples(DATA, "val").examples:
        if e.task == "tumor_presence" and not e.reversed:
            slices.setdefault(e.image_path, e)
    asked = []
    for e in slices.values():
        tumour = e.turns[-1][1].lower() == "yes"
        for wording, flip in FRESH:
            answer = "yes" if tumour != flip else "no"
            asked.append(replace(e, turns=((wording, answer),), wording=wording, reversed=flip))
    return asked


def main(adapters: list[str]) -> None:
    clash = [w for w, _ in FRESH if wordings.normalize(w) in listed()]
    if clash:
        sys.exit(f"bench/fresh_wordings.py: error: now in a wording list, so no longer fresh: {clash}")
    asked = fresh_examples()
    print(f"{len(asked) // len(FRESH)} val slices x {len(FRESH)} fresh wordings; balanced accuracy per wording")
    for adapter, scores in adapters_scored(adapters, asked, SETTINGS):
        found = scores["tasks"]["tumor_presence"]["wordings"]
        per = "; ".join(f"{w!r} {v['score']:.1f}" for w, v in found["per_wording"].items())
        print(f"{adapter}: worst {found['worst']:.1f}, mean {found['mean']:.1f}, consistency "
              f"{found['consistency']['value']:.1f} %; {per}", flush=True)


if __name__ == "__main__":
    main(adapter_folders("bench/fresh_wordings.py"))
