"""Does the model read the image? Scores that move only when it does.

- Swapped images: the same closed questions, each asked about another image of the same set. A model that answers
  from the question's wording scores the same either way; the drop ("image reliance", in points) is what the image
  adds. The swap is a fixed derangement: images in a hash-shuffled order, each replaced by the next one, so a
  replacement is no more alike than a random one (a sorted order would pair neighbouring slices of one class).
- No image: the same closed questions without any image (each distinct question asked once: the answer can only
  depend on its words). The cheapest image check.
- Per-task scores of label questions (medvlm.labels): tumour yes/no, tumour type, organ, ... with the balanced
  yes/no accuracy, which a model that always says "yes" or always says "no" scores 50 on.
- Wordings (medvlm.wordings): per task, the score of each held-out wording, the worst and the mean, and wording
  consistency: the share of (image, fact) pairs whose answers agree across all wordings, reversed polarity
  accounted for ("normal?" answered "yes" agrees with "tumour?" answered "no").
- Both axes per answer ("Consistent but Dangerous", arXiv 2603.20985): each closed label answer is consistent or not
  (its image and fact) and image-reliant or not (its answer changes with the image swapped or removed): Ideal
  (consistent, reliant), Fragile (reliant, inconsistent), Dangerous (consistent, image-blind), Worst.
- Confidence: the model's probability of "yes" against "no" at the answer's first token (medvlm.predict), with the
  expected calibration error over 10 bins and the points of a reliability plot.
Generation is medvlm.predict's; scoring is medvlm.metrics'.
"""
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

from medvlm import metrics
from medvlm.data import Example
from medvlm.labels import stable_fraction
from medvlm.stats import percent, wilson_interval

if TYPE_CHECKING:  # generation (torch, transformers) loads in evaluate(); scoring alone (review.report) never needs it
    from medvlm.chat import GenerationSettings


def swap_images(examples: list[Example]) -> list[Example]:
    """The closed questions of `examples`, each about a different image of the same list (none when it has one image)."""
    images = {}
    for example in examples:
        images.setdefault(example.image_key, example)
    if len(images) < 2:
        return []
    order = sorted(images, key=lambda key: (stable_fraction("swap", str(images[key].image_path or images[key].id)), str(key)))
    successor = {key: images[order[(i + 1) % len(order)]] for i, key in enumerate(order)}
    return [
        replace(e, image_path=successor[e.image_key].image_path, inline_image=successor[e.image_key].inline_image)
        for e in examples if e.answer_type.upper() == "CLOSED"
    ]


def without_images(examples: list[Example]) -> list[Example]:
    """Each distinct closed question of `examples` once, with no image: its answer can only come from its words."""
    seen = {}
    for e in examples:
        if e.answer_type.upper() == "CLOSED":
            seen.setdefault(e.question, replace(e, image_path=None, inline_image=None))
    return list(seen.values())


def as_record(example: Example, prediction: str, swapped: bool = False) -> dict:
    record = {"id": example.id, "image": example.image_path, "question": example.question, "answer": example.answer,
              "answer_type": example.answer_type, "task": example.task, "swapped_image": swapped, "prediction": str(prediction)}
    if example.fact:
        record |= {"fact": example.fact, "wording": example.wording, "reversed": example.reversed}
    if getattr(prediction, "p_yes", None) is not None:
        record["p_yes"] = prediction.p_yes
    return record


def closed_ci95(records: list[dict]) -> list[float] | None:
    """95 % Wilson interval of the strict closed accuracy, in %: differences inside it are noise."""
    hits = [metrics.closed_correct(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "CLOSED"]
    if not hits:
        return None
    return [round(100 * bound, 1) for bound in wilson_interval(sum(hits), len(hits))]


def headline(scores: dict) -> float | None:
    """One number per score: the balanced yes/no accuracy where both answers occur, else the closed accuracy, else
    the open recall."""
    for key in ("yes_no_balanced_accuracy", "closed_accuracy", "open_recall"):
        if scores.get(key) is not None:
            return scores[key]
    return None


def claim(record: dict) -> str:
    """What an answer says about its fact, comparable across wordings: yes/no turned to the plain polarity (a
    reversed wording's "no" claims "yes"), else the normalised answer. "unclear" for a yes/no answer that says neither."""
    if metrics.yes_no(record["answer"]) is not None and metrics.normalize_tokens(record["answer"]) in (["yes"], ["no"]):
        said = metrics.yes_no(record["prediction"])
        if said is None:
            return "unclear"
        return {"yes": "no", "no": "yes"}[said] if record.get("reversed") else said
    return " ".join(metrics.normalize_tokens(record["prediction"]))


def wording_scores(records: list[dict]) -> dict | None:
    """Per wording: the task's scores in that wording alone; the worst and the mean headline over wordings; the
    balanced accuracy of the reversed wordings; wording consistency over (image, fact) pairs asked in 2+ wordings."""
    by_wording = defaultdict(list)
    for r in records:
        if r.get("wording"):
            by_wording[r["wording"]].append(r)
    if len(by_wording) < 2:
        return None
    per = {}
    for wording, subset in by_wording.items():
        scores = metrics.score(subset)
        per[wording] = {"n": len(subset), "score": headline(scores), "accuracy": scores["closed_accuracy"],
                        "accuracy_ci95": closed_ci95(subset), "reversed": bool(subset[0].get("reversed"))}
    scored = {w: v for w, v in per.items() if v["score"] is not None}
    worst = min(scored, key=lambda w: scored[w]["score"]) if scored else None
    result = {"per_wording": per, "worst_wording": worst, "worst": scored[worst]["score"] if worst else None,
              "mean": round(sum(v["score"] for v in scored.values()) / len(scored), 2) if scored else None}
    flipped = [r for r in records if r.get("reversed")]
    if flipped:
        result["reversed"] = headline(metrics.score(flipped))
    groups = defaultdict(list)
    for r in records:
        groups[(r.get("image") or r.get("id"), r.get("fact") or r.get("task"))].append(claim(r))
    asked_often = [claims for claims in groups.values() if len(claims) >= 2]
    if asked_often:
        result["consistency"] = percent(sum(len(set(c)) == 1 for c in asked_often), len(asked_often))
    return result


QUADRANTS = ("ideal", "fragile", "dangerous", "worst")


def quadrants(records: list[dict]) -> dict:
    """Each closed label answer about its own image with a fact asked in 2+ wordings: consistent across them x
    image-reliant (its answer differs with the image swapped, or with no image) -> shares of the four kinds, per task
    and overall, in %."""
    own = [r for r in records if not r.get("swapped_image") and not r.get("no_image")]
    swapped = {r["id"]: r["prediction"] for r in records if r.get("swapped_image") and r.get("id")}
    blind = {r["question"]: r["prediction"] for r in records if r.get("no_image")}
    groups = defaultdict(list)
    for r in own:
        if r.get("fact"):
            groups[(r.get("image"), r["fact"])].append(claim(r))
    counts = defaultdict(lambda: dict.fromkeys(QUADRANTS, 0))
    for r in own:
        claims = groups.get((r.get("image"), r.get("fact")), [])
        if len(claims) < 2 or r["answer_type"].upper() != "CLOSED" or (r["id"] not in swapped and r["question"] not in blind):
            continue  # one wording of a fact says nothing of consistency
        said = " ".join(metrics.normalize_tokens(r["prediction"]))
        reliant = any(other is not None and " ".join(metrics.normalize_tokens(other)) != said
                      for other in (swapped.get(r["id"]), blind.get(r["question"])))
        consistent = len(set(claims)) == 1
        kind = QUADRANTS[(0 if consistent else 1) if reliant else (2 if consistent else 3)]
        for key in (r["task"], "all"):
            counts[key][kind] += 1
    return {task: {k: round(100 * v / sum(c.values()), 1) for k, v in c.items()} | {"n": sum(c.values())}
            for task, c in counts.items()}


def calibration(records: list[dict], bins: int = 10) -> dict | None:
    """Expected calibration error of yes/no answers that carry p_yes: each answer's confidence is the probability of
    the word it said; the answers are binned by confidence, and ECE is the count-weighted mean gap between each bin's
    accuracy and its mean confidence (0 to 1)."""
    points = []
    for r in records:
        said = metrics.yes_no(r["prediction"])
        if r.get("p_yes") is None or said is None or metrics.normalize_tokens(r["answer"]) not in (["yes"], ["no"]):
            continue
        confidence = r["p_yes"] if said == "yes" else 1 - r["p_yes"]
        points.append((confidence, said == metrics.yes_no(r["answer"])))
    if not points:
        return None
    table, error = [], 0.0
    for b in range(bins):
        inside = [(c, hit) for c, hit in points if b / bins <= c < (b + 1) / bins or (b == bins - 1 and c == 1.0)]
        if inside:
            confidence, accuracy = sum(c for c, _ in inside) / len(inside), sum(h for _, h in inside) / len(inside)
            error += len(inside) / len(points) * abs(accuracy - confidence)
            table.append({"confidence": round(confidence, 4), "accuracy": round(accuracy, 4), "n": len(inside)})
    return {"ece": round(error, 4), "n": len(points), "bins": table}


def score(records: list[dict]) -> dict:
    """Strict scores of the records asked about their own image (with the closed accuracy's 95 % interval), per task
    where tasks are named (with the wordings' scores and the answers' four kinds), the closed accuracy again on the
    swapped-image and no-image records with the drop, and the yes/no calibration."""
    own = [r for r in records if not r.get("swapped_image") and not r.get("no_image")]
    swapped = [r for r in records if r.get("swapped_image")]
    result = metrics.score(own) | {"closed_ci95": closed_ci95(own)}
    tasks = sorted({r.get("task") or "" for r in own} - {""})
    kinds = quadrants(records)
    if tasks:
        result["tasks"] = {}
        for task in tasks:
            subset = [r for r in own if r.get("task") == task]
            result["tasks"][task] = metrics.score(subset) | {"closed_ci95": closed_ci95(subset)}
            if task.endswith("not_brain"):  # every answer should be "no": the share of "yes" is the figure
                said_yes = sum(metrics.yes_no(r["prediction"]) == "yes" for r in subset)
                result["tasks"][task]["said_yes"] = percent(said_yes, len(subset))
            wordings = wording_scores(subset)
            if wordings:
                result["tasks"][task]["wordings"] = wordings
            if task in kinds:
                result["tasks"][task]["kinds"] = kinds[task]
            result["tasks"][task] |= reliance(result["tasks"][task], [r for r in swapped if r.get("task") == task])
    if "all" in kinds:
        result["kinds"] = kinds["all"]
    blind = [r for r in records if r.get("no_image")]
    if blind:
        answers = {r["question"]: r["prediction"] for r in blind}
        as_asked = [dict(r, prediction=answers[r["question"]]) for r in own if r["question"] in answers]
        result["no_image_closed_accuracy"] = metrics.score(as_asked)["closed_accuracy"]
    calibrated = calibration(own)
    if calibrated:
        result["calibration"] = calibrated
    return result | reliance(result, swapped)


def reliance(own_scores: dict, swapped: list[dict]) -> dict:
    """The closed accuracy of the swapped-image records with its interval, and the drop from the own-image closed
    accuracy in `own_scores` ("image reliance", in points); {} without swapped closed answers."""
    swapped_closed = metrics.score(swapped)["closed_accuracy"] if swapped else None
    if swapped_closed is None:
        return {}
    out = {"swapped_closed_accuracy": swapped_closed, "swapped_closed_ci95": closed_ci95(swapped)}
    if own_scores["closed_accuracy"] is not None:
        out["image_reliance"] = round(own_scores["closed_accuracy"] - swapped_closed, 2)
    return out


def evaluate(loaded, examples: list[Example], short_answer: bool, settings: "GenerationSettings", batch_size: int = 16,
             on_batch=None) -> tuple[dict, list[dict]]:
    """(scores, records): every example about its own image, then its closed questions about swapped images, then
    each distinct closed question with no image."""
    from medvlm.predict import answer_examples

    swapped, blind = swap_images(examples), without_images(examples)
    answers = answer_examples(loaded, examples + swapped, settings, batch_size, short_answer, on_batch)
    blind_answers = answer_examples(loaded, blind, settings, batch_size, short_answer, on_batch) if blind else []
    records = [as_record(e, a) for e, a in zip(examples, answers)]
    records += [as_record(e, a, swapped=True) for e, a in zip(swapped, answers[len(examples):])]
    records += [as_record(e, a) | {"no_image": True} for e, a in zip(blind, blind_answers)]
    return score(records), records


def task_lines(tasks: dict) -> list[str]:
    """Per task, for a terminal: the score, then the wordings' worst and mean, consistency and the answers' kinds."""
    lines = []
    for task, scores in tasks.items():
        kind = "closed accuracy" if scores["closed_n"] else "open recall"
        shown = scores["closed_accuracy"] if scores["closed_n"] else scores["open_recall"]
        balanced = f", yes/no balanced {scores['yes_no_balanced_accuracy']}" if scores["yes_no_balanced_accuracy"] is not None else ""
        relies = (f", image reliance {scores['image_reliance']} (swapped {scores['swapped_closed_accuracy']})"
                  if "image_reliance" in scores else "")
        lines.append(f"task {task:<21}{shown} ({kind}, n={scores['closed_n'] or scores['open_n']}{balanced}{relies})")
        if "said_yes" in scores:
            said = scores["said_yes"]
            lines.append(f"    said yes to a brain-tumour question about no brain MRI: {said['value']} % {said['ci95']} of {said['n']}")
        wordings = scores.get("wordings")
        if wordings:
            consistency = wordings.get("consistency")
            lines.append(f"    {len(wordings['per_wording'])} wordings: worst {wordings['worst']} ({wordings['worst_wording']!r}), "
                         f"mean {wordings['mean']}" + (f", reversed polarity {wordings['reversed']}" if "reversed" in wordings else "")
                         + (f", consistent on {consistency['value']} % {consistency['ci95']} of {consistency['n']} images" if consistency else ""))
        if "kinds" in scores:
            lines.append("    answers: " + ", ".join(f"{k} {scores['kinds'][k]} %" for k in QUADRANTS))
    return lines


def reliability_plot(calibrated: dict, path) -> None:
    """The reliability diagram of `calibration`'s bins: accuracy against confidence, the diagonal is perfect."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibrated["bins"]
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0.5, 1], [0.5, 1], color="grey", linestyle="--", label="perfectly calibrated")
    axis.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], s=[12 + 200 * b["n"] / calibrated["n"] for b in bins],
                 label="answers (area: count)")
    axis.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins])
    axis.set_xlim(0.45, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("confidence (probability of the word said)")
    axis.set_ylabel("accuracy")
    axis.set_title(f"yes/no answers: ECE {calibrated['ece']:.3f} (n = {calibrated['n']})")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
