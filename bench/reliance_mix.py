"""Brain image reliance (closed accuracy with each slice's own image minus with another slice's) of two MedVLM-Tiny
adapters side by side, on the question mix issue 22's baseline (25.1) was measured on: the 195 val slices, one
held-out wording per fact (the first, not reversed), the six tasks of that time (tumour presence, type, type yes/no,
side, height, size). Today's evaluation asks every held-out wording and adds tasks no within-set swap can change
(modality: every slice is an MRI), so its pooled figure is not comparable with 25.1; this one is.

    mkdir -p /tmp/adapter-14a7487 && for f in adapter_config.json adapter_model.safetensors; do
      git show 14a7487:medvlm/weights/medvlm-tiny-grounded/$f > /tmp/adapter-14a7487/$f; done
    python bench/reliance_mix.py /tmp/adapter-14a7487 medvlm/weights/medvlm-tiny-grounded   # ~30 min on 2 slow CPU cores

`--tasks tumor_side,tumor_height` first scores every held-out question of those tasks instead (all their wordings and
yes/no forms, val slices only): whether an adapter reads the facts that only the image's detail answers.

    python bench/reliance_mix.py --tasks tumor_side,tumor_side_yes_no,tumor_height,tumor_height_yes_no runs/A/adapter runs/B/adapter
"""
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medvlm import grounding, models, wordings  # noqa: E402
from medvlm.chat import GenerationSettings  # noqa: E402
from medvlm.data import load_examples  # noqa: E402

DATA = f"labels:{REPO.parent / 'shared' / 'data' / 'brain-tumor' / 'data.yaml'}"
BASELINE_TASKS = ("tumor_presence", "tumor_type", "tumor_type_yes_no", "tumor_side", "tumor_height", "tumor_size")
SETTINGS = GenerationSettings(max_new_tokens=16, temperature=0.0)


def in_baseline_mix(task: str | None, wording: str | None, reversed: bool | None) -> bool:
    """Is this question in the baseline mix: one of its six tasks, in the task's first held-out wording, not reversed?"""
    return (task in BASELINE_TASKS and not reversed
            and wording == wordings.wordings(task, wordings.HELDOUT, reversed=False)[0].text)


def adapters_scored(adapters: list[str], examples: list, settings: GenerationSettings = SETTINGS):
    """(adapter, scores) for each MedVLM-Tiny adapter in turn: the project's evaluation of the examples (own images,
    the closed ones again about swapped images, and each with no image)."""
    for adapter in adapters:
        loaded = models.load(replace(models.resolve("medvlm-tiny"), adapter=adapter), device="cpu")
        yield adapter, grounding.evaluate(loaded, examples, True, settings, 16)[0]


def adapter_folders(prog: str, args: list[str] | None = None) -> list[str]:
    """The command line's adapter folders; one line and exit when there are none, or one is no folder."""
    args = sys.argv[1:] if args is None else args
    if not args or not all(Path(adapter).is_dir() for adapter in args):
        sys.exit(f"{prog}: error: give one or more adapter folders (see the docstring)")
    return args


def main(args: list[str]) -> None:
    held_out, chosen = load_examples(DATA, "val").examples, None
    if args[:1] == ["--tasks"]:
        chosen, args, known = set(args[1].split(",")) if len(args) > 1 else set(), args[2:], {e.task for e in held_out}
        if not chosen or not chosen <= known:
            sys.exit(f"bench/reliance_mix.py: error: --tasks: give tasks of {', '.join(sorted(known))}")
    adapters = adapter_folders("bench/reliance_mix.py", args)
    examples = [e for e in held_out if (e.task in chosen if chosen else in_baseline_mix(e.task, e.wording, e.reversed))]
    tasks = sorted({e.task for e in examples})
    print(f"{len(examples)} questions: " + ", ".join(f"{t} {sum(e.task == t for e in examples)}" for t in tasks))
    print(f"{'adapter':<45}{'own':>7}{'swapped':>9}{'reliance':>10}   per task: own (own - swapped)")
    for adapter, scores in adapters_scored(adapters, examples):
        per_task = ", ".join(f"{task} {score['closed_accuracy']:.1f} ({score['image_reliance']:+.1f})"
                             for task, score in ((task, scores["tasks"][task]) for task in tasks))
        print(f"{adapter:<45}{scores['closed_accuracy']:>7.1f}{scores['swapped_closed_accuracy']:>9.1f}"
              f"{scores['image_reliance']:>10.1f}   {per_task}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
