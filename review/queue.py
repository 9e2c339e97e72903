"""A reviewer's queue: the predictions they have not graded, blinded (no model name) and shuffled in an order of
their own that stays the same across sessions, filtered by run and question type."""
import hashlib

from review.store import Store

QUEUE_SQL = """
    SELECT p.id, p.run_id, i.question, i.reference, i.answer_type, i.image_ref, p.answer
    FROM predictions p JOIN items i ON i.id = p.item_id
    WHERE (? IS NULL OR p.run_id = ?) AND (? IS NULL OR i.answer_type = ?)
"""
FIELDS = ("prediction_id", "run_id", "question", "reference", "answer_type", "image_ref", "answer")


def _order(reviewer_id: int, prediction_id: int) -> bytes:
    return hashlib.blake2b(f"{reviewer_id}:{prediction_id}".encode(), digest_size=8).digest()


def queue(store: Store, reviewer_id: int, run_id: int | None = None, answer_type: str | None = None) -> tuple[list[dict], int]:
    """(ungraded predictions in this reviewer's order, how many of the filtered predictions they have graded)."""
    rows = [dict(zip(FIELDS, row)) for row in store.query(QUEUE_SQL, [run_id, run_id, answer_type, answer_type])]
    graded = {v["prediction_id"] for v in store.current_verdicts() if v["reviewer_id"] == reviewer_id}
    pending = sorted((r for r in rows if r["prediction_id"] not in graded), key=lambda r: _order(reviewer_id, r["prediction_id"]))
    return pending, len(rows) - len(pending)


def model_of(store: Store, prediction_id: int, with_run: bool = False) -> str:
    """The model behind a prediction, revealed once the reviewer has given a verdict; the run only to admins (a run
    id names the model of every later answer filtered by it)."""
    model, adapter, run = store.query(
        "SELECT r.model, r.adapter, r.id FROM predictions p JOIN runs r ON r.id = p.run_id WHERE p.id = ?", [prediction_id])[0]
    return f"{model}{' + ' + adapter.rsplit('/', 1)[-1] if adapter else ''}{f' (run {run})' if with_run else ''}"
