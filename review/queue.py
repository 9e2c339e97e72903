"""A reviewer's queue: the predictions they have not graded, blinded (no model name) and shuffled in an order of
their own that stays the same across sessions, filtered by run and question type. Contested comparison answers come
first: an image where the VLM and the detector disagree, or where either contradicts the label."""
import hashlib

from medvlm.compare import vlm_finds_tumour
from medvlm.store import Store

QUEUE_SQL = """
    SELECT p.id, p.run_id, i.question, i.reference, i.answer_type, i.image_ref, p.answer, p.boxes
    FROM predictions p JOIN items i ON i.id = p.item_id
    WHERE (? IS NULL OR p.run_id = ?) AND (? IS NULL OR i.answer_type = ?)
"""
FIELDS = ("prediction_id", "run_id", "question", "reference", "answer_type", "image_ref", "answer", "boxes")


def _order(reviewer_id: int, prediction_id: int) -> bytes:
    return hashlib.blake2b(f"{reviewer_id}:{prediction_id}".encode(), digest_size=8).digest()


COMPARISON_SQL = """
    SELECT p.id, p.item_id, p.answer, i.reference FROM predictions p JOIN runs r ON r.id = p.run_id JOIN items i ON i.id = p.item_id
    WHERE r.settings LIKE '%"kind": "comparison"%'
"""


def contested(store: Store) -> set[int]:
    """Prediction ids of comparison answers about an image where the sides disagree or one contradicts the label."""
    by_item: dict[int, list] = {}
    for prediction, item, answer, reference in store.query(COMPARISON_SQL):
        by_item.setdefault(item, []).append((prediction, vlm_finds_tumour(answer), reference))
    out = set()
    for answers in by_item.values():
        said = {finds for _, finds, _ in answers}
        truth = {reference == "yes" for _, _, reference in answers if reference in ("yes", "no")}
        if len(said) > 1 or said != truth and truth:
            out.update(prediction for prediction, _, _ in answers)
    return out


def queue(store: Store, reviewer_id: int, run_id: int | None = None, answer_type: str | None = None) -> tuple[list[dict], int]:
    """(ungraded predictions in this reviewer's order, contested ones first; how many of the filtered predictions
    they have graded)."""
    rows = [dict(zip(FIELDS, row)) for row in store.query(QUEUE_SQL, [run_id, run_id, answer_type, answer_type])]
    graded = {v["prediction_id"] for v in store.current_verdicts(reviewer_id)}
    first = contested(store)
    pending = sorted((r for r in rows if r["prediction_id"] not in graded),
                     key=lambda r: (r["prediction_id"] not in first, _order(reviewer_id, r["prediction_id"])))
    return pending, len(rows) - len(pending)


def model_of(store: Store, prediction_id: int, with_run: bool = False) -> str:
    """The model behind a prediction, revealed once the reviewer has given a verdict; the run only to admins (a run
    id names the model of every later answer filtered by it)."""
    model, adapter, run = store.query(
        "SELECT r.model, r.adapter, r.id FROM predictions p JOIN runs r ON r.id = p.run_id WHERE p.id = ?", [prediction_id])[0]
    return f"{model}{' + ' + adapter.rsplit('/', 1)[-1] if adapter else ''}{f' (run {run})' if with_run else ''}"
