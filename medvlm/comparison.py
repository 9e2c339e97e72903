"""The VLM-versus-detector report over a labelled set: pure arithmetic on what each side said about each image.

Three sides answer every image: the detector (a tumour = any box; its type = the most confident box's class), the VLM
asked plainly, and the VLM given the detector's findings ("grounded"). A VLM answer that does not say whether there
is a tumour, or names no single type, is "unclear": counted wrong in accuracies and shown as its own number, never
read as a "no".
"""
from dataclasses import dataclass, field

from medvlm.metrics import normalize_tokens
from medvlm.stats import kappa_with_interval, percent

SIDES = ("detector", "vlm", "vlm_grounded")


@dataclass(frozen=True)
class Case:
    """One labelled image and each side's findings. label: the class name, or None for a tumour-free image."""

    image: str
    label: str | None
    presence: dict = field(default_factory=dict)  # side -> True / False / None (unclear)
    kind: dict = field(default_factory=dict)  # side -> class name or None (none named, or unclear)
    box_iou: float | None = None  # the detector's best box against the labelled one (one labelled box only)
    wordings: dict = field(default_factory=dict)  # "presence"/"type" -> {wording: the plain VLM's finding in it}


def vlm_type(answer: str, names: list[str]) -> str | None:
    """The one class the answer names ("pituitary tumor" -> pituitary); None for none or several."""
    words = set(normalize_tokens(answer))
    named = [name for name in names if set(normalize_tokens(name)) <= words]
    return named[0] if len(named) == 1 else None


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def report(cases: list[Case], names: list[str]) -> dict:
    tumour = [c for c in cases if c.label is not None]
    free = [c for c in cases if c.label is None]
    presence, types, wrong = {}, {}, {}
    for side in SIDES:
        right = lambda c, side=side: c.presence.get(side) is (c.label is not None)  # noqa: E731
        presence[side] = {
            "sensitivity": percent(sum(right(c) for c in tumour), len(tumour)),
            "specificity": percent(sum(right(c) for c in free), len(free)),
            "accuracy": percent(sum(right(c) for c in cases), len(cases)),
            "unclear": sum(c.presence.get(side) is None for c in cases),
        }
        types[side] = percent(sum(c.kind.get(side) == c.label for c in tumour), len(tumour)) | {
            "unclear": sum(c.kind.get(side) is None for c in tumour)}
        wrong[side] = sorted(c.image for c in cases if not right(c) or (c.label is not None and c.kind.get(side) != c.label))

    with_box = [c for c in tumour if c.box_iou is not None]
    clear = [c for c in cases if c.presence.get("vlm") is not None]
    outcome = {"both_right": 0, "detector_only_right": 0, "vlm_only_right": 0, "both_wrong": 0}
    for c in cases:
        truth = c.label is not None
        d, v = c.presence.get("detector") is truth, c.presence.get("vlm") is truth
        outcome["both_right" if d and v else "detector_only_right" if d else "vlm_only_right" if v else "both_wrong"] += 1

    def flips(key: str, plain: str, grounded: str, among: list[Case]) -> dict:
        truth = (lambda c: c.label is not None) if key == "presence" else (lambda c: c.label)
        get = (lambda c, s: c.presence.get(s)) if key == "presence" else (lambda c, s: c.kind.get(s))
        return {"to_right": sum(get(c, plain) != truth(c) and get(c, grounded) == truth(c) for c in among),
                "to_wrong": sum(get(c, plain) == truth(c) and get(c, grounded) != truth(c) for c in among)}

    per_class = {}
    for label in [None, *names]:
        group = [c for c in cases if c.label == label]
        if not group:
            continue
        per_class[label or "none"] = {
            side: {"n": len(group),
                   "presence_accuracy": percent(sum(c.presence.get(side) is (label is not None) for c in group), len(group))["value"],
                   "type_accuracy": percent(sum(c.kind.get(side) == label for c in group), len(group))["value"] if label else None}
            for side in SIDES}
    result = {
        "images": len(cases), "tumour_images": len(tumour), "classes": names,
        "presence": presence, "type": types,
        "detector_box_iou50": percent(sum(c.box_iou >= 0.5 for c in with_box), len(with_box)),
        "agreement": {"kappa_vlm_detector": kappa_with_interval([c.presence["detector"] for c in clear],
                                                                 [c.presence["vlm"] for c in clear]),
                      "who_was_right": outcome},
        "grounding": {"presence": flips("presence", "vlm", "vlm_grounded", cases),
                      "type": flips("type", "vlm", "vlm_grounded", tumour)},
        "per_class": per_class,
        "wrong": wrong,
    }
    by_wording = wording_report(cases)
    if by_wording:
        result["wordings"] = by_wording
    return result


def wording_report(cases: list[Case]) -> dict | None:
    """The plain VLM per wording: presence sensitivity, specificity and their mean (balanced accuracy), type
    accuracy; the worst wording of each. None when the cases hold one wording only."""
    texts = {kind: list(dict.fromkeys(w for c in cases for w in c.wordings.get(kind, {}))) for kind in ("presence", "type")}
    if len(texts["presence"]) < 2:
        return None
    tumour, free = [c for c in cases if c.label is not None], [c for c in cases if c.label is None]
    presence = {}
    for text in texts["presence"]:
        sensitivity = percent(sum(c.wordings["presence"].get(text) is True for c in tumour), len(tumour))
        specificity = percent(sum(c.wordings["presence"].get(text) is False for c in free), len(free))
        parts = [v["value"] for v in (sensitivity, specificity) if v["value"] is not None]
        presence[text] = {"sensitivity": sensitivity, "specificity": specificity,
                          "balanced": round(sum(parts) / len(parts), 2) if parts else None}
    kinds = {text: percent(sum(c.wordings["type"].get(text) == c.label for c in tumour), len(tumour)) for text in texts["type"]}
    worst = min(presence, key=lambda t: presence[t]["balanced"] if presence[t]["balanced"] is not None else 101)
    worst_type = min(kinds, key=lambda t: kinds[t]["value"] if kinds[t]["value"] is not None else 101) if kinds else None
    balanced = [v["balanced"] for v in presence.values() if v["balanced"] is not None]
    return {"presence": presence, "type": kinds,
            "worst_presence": {"wording": worst, "balanced": presence[worst]["balanced"]},
            "mean_presence_balanced": round(sum(balanced) / len(balanced), 2) if balanced else None,
            "worst_type": {"wording": worst_type, "accuracy": kinds[worst_type]} if worst_type else None}


SIDE_NAMES = {"detector": "detector", "vlm": "VLM", "vlm_grounded": "VLM + findings"}


def cell(entry: dict) -> str:
    """"86.7 [81, 91]" for a rate with its interval; "-" when nothing was counted."""
    return "-" if entry["value"] is None else f"{entry['value']:.1f} [{entry['ci95'][0]:.0f}, {entry['ci95'][1]:.0f}]"


def summary_rows(result: dict) -> list[dict]:
    """The report's headline figures, one row per measure and one column per side (the CLI and the Compare tab)."""
    measures = (("tumour sensitivity %", lambda s: cell(result["presence"][s]["sensitivity"])),
                ("tumour specificity %", lambda s: cell(result["presence"][s]["specificity"])),
                ("tumour accuracy %", lambda s: cell(result["presence"][s]["accuracy"])),
                ("type accuracy %", lambda s: cell(result["type"][s])),
                ("unclear presence", lambda s: str(result["presence"][s]["unclear"])))
    rows = [{"measure": name} | {SIDE_NAMES[side]: get(side) for side in SIDES} for name, get in measures]
    wordings = result.get("wordings")
    if wordings:  # the plain VLM's worst wording: a table that shows one wording only would hide it
        worst = wordings["presence"][wordings["worst_presence"]["wording"]]
        n = len(wordings["presence"])
        rows += [{"measure": f"worst of {n} wordings: sensitivity %", "VLM": cell(worst["sensitivity"])},
                 {"measure": f"worst of {n} wordings: specificity %", "VLM": cell(worst["specificity"])}]
        if wordings.get("worst_type"):
            rows.append({"measure": f"worst of {len(wordings['type'])} wordings: type %", "VLM": cell(wordings["worst_type"]["accuracy"])})
        rows = [{"measure": r["measure"]} | {SIDE_NAMES[side]: r.get(SIDE_NAMES[side], "") for side in SIDES} for r in rows]
    return rows
