"""Issue 22's targets for one or more train.vlm runs side by side, read from each run's eval.json and predictions.jsonl
(no model is loaded: seconds). The shipped adapter's folder holds its eval.json only, so its like-for-like reliance is
left blank (bench/reliance_mix.py measures it by generating).

    python bench/targets.py medvlm/weights/medvlm-tiny-grounded runs/tiny-any-wording runs/tiny-any-wording-2ep

Each row: the measure, each run's figure, the target; a run's figure is starred (*) where it misses.
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reliance_mix import in_baseline_mix  # noqa: E402  (bench/, this script's folder)

from medvlm import grounding  # noqa: E402

BRAIN = "labels:../shared/data/brain-tumor/data.yaml"
VQA_RAD_LABELS = "labels:../shared/data/vqa-rad/vqa_rad.jsonl"


def like_for_like_reliance(predictions: Path) -> float | None:
    """Image reliance on the mix issue 22's 25.1 was measured on (bench/reliance_mix.py), from a run's answers."""
    rows = [json.loads(line) for line in predictions.open()]
    mix = [r for r in rows if r.get("source") == BRAIN and not r.get("no_image")
           and in_baseline_mix(r.get("task"), r.get("wording"), r.get("reversed"))]
    return grounding.score(mix).get("image_reliance") if mix else None


def measures(run: Path) -> dict[str, tuple[float | None, float, bool]]:
    """{measure: (figure, target, higher is better)}."""
    result = json.loads((run / "eval.json").read_text())
    brain = result["labels"][BRAIN]
    presence, kind = brain["tasks"]["tumor_presence"]["wordings"], brain["tasks"]["tumor_type"]["wordings"]
    predictions = run / "predictions.jsonl"
    return {
        "presence, worst held-out wording": (presence["worst"], 85, True),
        "presence, mean over wordings": (presence["mean"], 90, True),
        "reversed polarity, balanced": (presence["reversed"], 85, True),
        "presence wording consistency %": (presence["consistency"]["value"], 85, True),
        "type, worst wording": (kind["worst"], 70, True),
        "yes/no calibration error": (result["calibration"]["ece"], 0.08, False),
        "VQA-RAD test closed": (result["closed_accuracy"], 60, True),
        "VQA-RAD region yes/no, balanced": (result["labels"][VQA_RAD_LABELS]["tasks"]["organ_yes_no"]["yes_no_balanced_accuracy"], 95, True),
        "brain image reliance (eval's mix)": (brain["image_reliance"], 25, True),
        "brain image reliance (issue's mix)": (like_for_like_reliance(predictions) if predictions.exists() else None, 25, True),
        "'yes' on other images and blanks %": (result["not_brain_said_yes"]["value"], 5, False),
    }


def main(argv: list[str]) -> int:
    if not argv or any(not (Path(run) / "eval.json").is_file() for run in argv):
        print("bench/targets.py: error: give run folders that hold an eval.json (train.vlm's output_dir)", file=sys.stderr)
        return 2
    table = {run: measures(Path(run)) for run in argv}
    names = [Path(run).name for run in argv]
    print(f"{'measure':<38}" + "".join(f"{name[-24:]:>26}" for name in names) + f"{'target':>9}")
    for measure, (_, target, higher) in next(iter(table.values())).items():
        cells = []
        for run in argv:
            value = table[run][measure][0]
            missed = value is not None and (value < target if higher else value > target)
            cells.append(f"{'' if value is None else value:>25}{'*' if missed else ' '}")
        print(f"{measure:<38}" + "".join(cells) + f"{('>= ' if higher else '<= ') + str(target):>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
