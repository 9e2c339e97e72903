"""What an adapter was trained on and how it scored, from the files train.vlm writes beside it (train_config.json,
eval.json), in a few lines for the app's model panel."""
import json
from pathlib import Path

# Label tasks shown on the panel, with what their score is.
SHOWN_TASKS = {
    "tumor_presence": "tumour yes/no (balanced)",
    "tumor_type": "tumour type",
    "organ_yes_no": "body region yes/no (balanced)",
}


def source_name(source: str) -> str:
    """'labels:../shared/data/brain-tumor/data.yaml' -> 'brain-tumor labels': the data set's folder, no server path."""
    is_labels = source.startswith("labels:")
    path = Path(source.removeprefix("labels:"))
    name = path.parent.name if path.suffix else path.name
    return f"{name or source} labels" if is_labels else (name or source)


def train_config(adapter: str | None) -> dict:
    """The adapter's train_config.json, or {} when there is none or it is unreadable."""
    try:
        config = json.loads((Path(adapter) / "train_config.json").read_text())
    except (OSError, ValueError, TypeError):
        return {}
    return config if isinstance(config, dict) else {}


def base_model(adapter: str | None) -> str | None:
    """The --model the adapter was trained on (its train_config.json), or None when it does not say."""
    model = train_config(adapter).get("model")
    return model.get("model") if isinstance(model, dict) else None


def conversation_limits(adapter: str | None) -> list[str]:
    """What a MedVLM-Tiny adapter trained here gets wrong in a conversation, measured, not read from its scores (one
    sentence each). Trained on first questions only, a yes/no follow-up copies earlier answers (python
    bench/follow_up.py: a reversed follow-up after "Is there a tumour?" right 70.8 % of 24, alone 100 %); no recipe
    asks a tumour's type about a tumour-free slice, so it names one (python bench/false_premise.py: 60 of 60)."""
    data = train_config(adapter).get("data")
    follow_ups = data.get("follow_ups", 0) if isinstance(data, dict) else 0
    limits = [] if follow_ups else [
        "An earlier question can change a yes/no answer: ask one that matters first, in a new conversation."]
    return limits + ["Asked what kind of tumour a scan shows, it names one even when there is none: ask whether there is one first."]


def summary(adapter: str | None) -> list[str]:
    """Plain-text lines (numbers and data set names; the UI escapes them); none when the adapter folder has no such files."""
    if not adapter or not Path(adapter).is_dir():
        return []
    folder = Path(adapter)
    lines, main_name = [], "main test split"
    try:
        config = json.loads((folder / "train_config.json").read_text())
        records = config["resolved"]["train_records"]
        records = records if isinstance(records, dict) else {config["data"]["data"]: records}
        parts = [f"{source_name(s)} ({n:,} questions)" for s, n in records.items()]
        lines.append(f"Trained on: {', '.join(parts)}; {config['train']['epochs']:g} epochs.")
        main_name = f"{source_name(next(iter(records)))} {config['data']['eval_split']}"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        scores = json.loads((folder / "eval.json").read_text())
        main = [f"closed {scores['closed_accuracy']} %"]
        if scores.get("swapped_closed_accuracy") is not None:
            main.append(f"with swapped images {scores['swapped_closed_accuracy']} %")
        main.append(f"open recall {scores['open_recall']} %")
        baseline = scores.get("majority_baseline", {}).get("closed_accuracy")
        text = f"Held-out scores: {main_name} {', '.join(main)}" + (f" (always the commonest answer: closed {baseline} %)" if baseline else "")
        label_scores = []
        for source_scores in scores.get("labels", {}).values():
            for task, title in SHOWN_TASKS.items():
                task_scores = source_scores.get("tasks", {}).get(task)
                if task_scores:
                    value = task_scores["yes_no_balanced_accuracy"] if "balanced" in title else task_scores["closed_accuracy"]
                    wordings = task_scores.get("wordings")
                    worst = f" (worst of {len(wordings['per_wording'])} held-out wordings {wordings['worst']} %)" if wordings else ""
                    label_scores.append(f"{title} {value} %{worst}")
        lines.append(text + (f"; {', '.join(label_scores)}." if label_scores else "."))
        extra = []
        if scores.get("not_brain_said_yes"):
            said = scores["not_brain_said_yes"]
            extra.append(f"says a brain tumour is there on {said['value']} % of {said['n']} questions about images that are no brain MRI")
        if scores.get("calibration"):
            extra.append(f"yes/no calibration error {scores['calibration']['ece']:.3f}")
        if extra:
            lines.append(f"Also: {'; '.join(extra)}.")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return lines
