"""Does the model read the image? Scores that move only when it does.

- Swapped images: the same closed questions, each asked about another image of the same set. A model that answers
  from the question's wording scores the same either way; the drop ("image reliance", in points) is what the image
  adds. The swap is a fixed derangement: images in a hash-shuffled order, each replaced by the next one, so a
  replacement is no more alike than a random one (a sorted order would pair neighbouring slices of one class).
- Per-task scores of label questions (medvlm.labels): tumour yes/no, tumour type, organ, ... with the balanced
  yes/no accuracy, which a model that always says "yes" or always says "no" scores 50 on.
Generation is medvlm.predict's; scoring is medvlm.metrics'.
"""
from dataclasses import replace

from medvlm import metrics
from medvlm.chat import GenerationSettings
from medvlm.data import Example
from medvlm.labels import stable_fraction
from medvlm.predict import answer_examples
from medvlm.stats import wilson_interval


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


def as_record(example: Example, prediction: str, swapped: bool = False) -> dict:
    return {"id": example.id, "image": example.image_path, "question": example.question, "answer": example.answer,
            "answer_type": example.answer_type, "task": example.task, "swapped_image": swapped, "prediction": prediction}


def closed_ci95(records: list[dict]) -> list[float] | None:
    """95 % Wilson interval of the strict closed accuracy, in %: differences inside it are noise."""
    hits = [metrics.closed_correct(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "CLOSED"]
    if not hits:
        return None
    return [round(100 * bound, 1) for bound in wilson_interval(sum(hits), len(hits))]


def score(records: list[dict]) -> dict:
    """Strict scores of the records asked about their own image (with the closed accuracy's 95 % interval), per task
    where tasks are named, and the closed accuracy again on the swapped-image records with the drop."""
    own = [r for r in records if not r.get("swapped_image")]
    swapped = [r for r in records if r.get("swapped_image")]
    result = metrics.score(own) | {"closed_ci95": closed_ci95(own)}
    tasks = sorted({r.get("task") or "" for r in own} - {""})
    if tasks:
        result["tasks"] = {}
        for task in tasks:
            subset = [r for r in own if r.get("task") == task]
            result["tasks"][task] = metrics.score(subset) | {"closed_ci95": closed_ci95(subset)}
    if swapped:
        swapped_closed = metrics.score(swapped)["closed_accuracy"]
        result["swapped_closed_accuracy"] = swapped_closed
        result["swapped_closed_ci95"] = closed_ci95(swapped)
        if result["closed_accuracy"] is not None and swapped_closed is not None:
            result["image_reliance"] = round(result["closed_accuracy"] - swapped_closed, 2)
    return result


def evaluate(loaded, examples: list[Example], short_answer: bool, settings: GenerationSettings, batch_size: int = 16,
             on_batch=None) -> tuple[dict, list[dict]]:
    """(scores, records): every example about its own image, then its closed questions about swapped images."""
    swapped = swap_images(examples)
    answers = answer_examples(loaded, examples + swapped, settings, batch_size, short_answer, on_batch)
    records = [as_record(e, a) for e, a in zip(examples, answers)]
    records += [as_record(e, a, swapped=True) for e, a in zip(swapped, answers[len(examples):])]
    return score(records), records
