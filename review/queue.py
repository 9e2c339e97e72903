"""A reviewer's queue: the predictions they have not graded, blinded (no model name), in an order of their own that
stays the same across sessions, filtered by run and question type; not the answers of live arena battles, which
physicians vote on instead. Contested comparison answers come first: an image where the VLM and the detector
disagree, or where either contradicts the label (marked when they are written, medvlm.compare.mark_contested).

The order is stored, not recomputed per click. Every prediction has a fixed pseudo-random position
(medvlm.store.shuffle_key) and each reviewer walks that cycle from a starting point of their own, so reviewers start
on different answers; the next answer is then a read along the index (contested, shuffle), whose cost grows with what
the reviewer has graded, not with how many predictions the study holds (bench/review.py --predictions).
"""
import json

from medvlm.store import Store, shuffle_key

FIELDS = ("prediction_id", "run_id", "question", "reference", "answer_type", "image_ref", "answer", "boxes")
LIVE_DATASET = "arena:live"  # live arena battles' items (review.arena): voted on there, not graded here
FILTERS = f"(:run IS NULL OR p.run_id = :run) AND (:kind IS NULL OR i.answer_type = :kind) AND i.dataset != '{LIVE_DATASET}'"
UNGRADED = """(SELECT verdict FROM verdicts v WHERE v.reviewer_id = :reviewer AND v.prediction_id = p.id
               ORDER BY v.id DESC LIMIT 1) IS NULL"""
NEXT_SQL = f"""
    SELECT p.id, p.run_id, i.question, i.reference, i.answer_type, i.image_ref, p.answer, p.boxes
    FROM predictions p INDEXED BY predictions_in_queue JOIN items i ON i.id = p.item_id
    WHERE p.contested = :contested AND p.shuffle >= :low AND p.shuffle < :high AND {FILTERS}
      AND p.id NOT IN (SELECT value FROM json_each(:skipped)) AND {UNGRADED}
    ORDER BY p.shuffle LIMIT :limit
"""
ONE_SQL = f"""
    SELECT p.id, p.run_id, i.question, i.reference, i.answer_type, i.image_ref, p.answer, p.boxes
    FROM predictions p JOIN items i ON i.id = p.item_id WHERE p.id = :id AND {FILTERS} AND {UNGRADED}
"""
GRADED_SQL = f"""
    SELECT COUNT(*) FROM (SELECT prediction_id, MAX(id) AS id FROM verdicts WHERE reviewer_id = :reviewer GROUP BY prediction_id) latest
    JOIN verdicts v ON v.id = latest.id JOIN predictions p ON p.id = v.prediction_id JOIN items i ON i.id = p.item_id
    WHERE v.verdict IS NOT NULL AND {FILTERS}
"""
TOTAL_SQL = f"SELECT COUNT(*) FROM predictions p JOIN items i ON i.id = p.item_id WHERE {FILTERS}"
END = 1 << 62  # shuffle_key's range
_counts: dict[tuple, tuple[int, int]] = {}  # (database, table, sql, arguments) -> (the table's newest id, the count)


def pending(store: Store, reviewer_id: int, run_id: int | None = None, answer_type: str | None = None,
            skipped: tuple = (), limit: int = 1) -> list[dict]:
    """The next `limit` ungraded predictions in this reviewer's order, contested ones first; the skipped ones (ids)
    only once nothing else is left."""
    start = shuffle_key("reviewer", reviewer_id)
    stretches = [{"contested": contested, "low": low, "high": high}
                 for contested in (1, 0) for low, high in ((start, END), (0, start))]
    return walk(store, NEXT_SQL, FIELDS, stretches, {"run": run_id, "kind": answer_type, "reviewer": reviewer_id}, skipped, limit)


def walk(store: Store, sql: str, fields: tuple, stretches: list[dict], params: dict, skipped: tuple, limit: int) -> list[dict]:
    """Up to `limit` rows of `sql` (its :limit and :skipped filled in), read stretch by stretch of a reviewer's
    cycle (each stretch's parameters added to params) until there are enough; the skipped ids only once nothing else
    is left. The review and arena queues both walk this way."""
    def read(leave_out) -> list[dict]:
        out: list[dict] = []
        for stretch in stretches:
            rows = store.query(sql, params | stretch | {"skipped": json.dumps(list(leave_out)), "limit": limit - len(out)})
            out += [dict(zip(fields, row)) for row in rows]
            if len(out) >= limit:
                break
        return out

    return read(skipped) or (read(()) if skipped else [])


def pending_one(store: Store, reviewer_id: int, prediction_id: int, run_id: int | None = None,
                answer_type: str | None = None) -> dict | None:
    """That prediction, if it passes the filters and this reviewer has not graded it."""
    rows = store.query(ONE_SQL, {"id": prediction_id, "run": run_id, "kind": answer_type, "reviewer": reviewer_id})
    return dict(zip(FIELDS, rows[0])) if rows else None


def progress(store: Store, reviewer_id: int, run_id: int | None = None, answer_type: str | None = None) -> tuple[int, int]:
    """(how many of the filtered predictions this reviewer has graded, how many there are)."""
    filters = {"run": run_id, "kind": answer_type}
    return store.query(GRADED_SQL, filters | {"reviewer": reviewer_id})[0][0], count_rows(store, "predictions", TOTAL_SQL, filters)


def count_rows(store: Store, table: str, sql: str | None = None, arguments: dict | None = None) -> int:
    """COUNT(*) over an append-only table (or `sql` counting rows of it), counted again only once a row was added:
    a count reads every row, and the queues must not on each click."""
    sql = sql or f"SELECT COUNT(*) FROM {table}"
    key = (str(store.path), table, sql, tuple(sorted((arguments or {}).items())))
    newest = store.query(f"SELECT MAX(id) FROM {table}")[0][0]
    known = _counts.get(key)
    if known is None or known[0] != newest:
        known = _counts[key] = (newest, store.query(sql, arguments or {})[0][0])
    return known[1]


def model_of(store: Store, prediction_id: int, with_run: bool = False) -> str:
    """The model behind a prediction, revealed once the reviewer has given a verdict; the run only to admins (a run
    id names the model of every later answer filtered by it)."""
    model, adapter, run = store.query(
        "SELECT r.model, r.adapter, r.id FROM predictions p JOIN runs r ON r.id = p.run_id WHERE p.id = ?", [prediction_id])[0]
    return model_label(model, adapter) + (f" (run {run})" if with_run else "")


def model_label(model: str, adapter: str | None) -> str:
    """A model as reviewers, the leaderboard and the report name it: the model, and the adapter's folder name if it
    has one."""
    return f"{model} + {adapter.rstrip('/').rsplit('/', 1)[-1]}" if adapter else model
