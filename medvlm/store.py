"""The review store: one SQLite file (default medvlm.db) of evaluation runs, items, predictions, reviewers and
verdicts, opened through sqlite-utils in WAL mode with foreign keys on.

Verdicts are append-only: every grade, change or undo is a new row, and a reviewer's current verdict on a
prediction is their newest row for it (verdict NULL = withdrawn). History is never lost, a crash mid-write
leaves at most one uncommitted row out, and a resubmitted request (double click, retry) carries the same
request_id and is stored once. Writes take the write lock up front (BEGIN IMMEDIATE) and wait up to
BUSY_TIMEOUT_S for other writers. The schema version is SQLite's user_version; MIGRATIONS[k] upgrades k -> k + 1.
"""
import hashlib
import json
import sqlite3
import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import sqlite_utils

from medvlm.errors import UserFacingError
from medvlm.leaderboard import OUTCOMES
from medvlm.settings import DEFAULT_DB

VERDICTS = ("correct", "rephrased", "wrong")
BUSY_TIMEOUT_S = 30.0

_SCHEMA_1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY, model TEXT NOT NULL, adapter TEXT, dataset TEXT NOT NULL, split TEXT,
    settings TEXT NOT NULL DEFAULT '{}', created TEXT NOT NULL
);
CREATE TABLE items (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, image_ref TEXT, image_hash TEXT, question TEXT NOT NULL,
    reference TEXT, answer_type TEXT NOT NULL CHECK (answer_type IN ('CLOSED', 'OPEN')),
    UNIQUE (dataset, image_hash, question, reference)
);
CREATE TABLE predictions (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), item_id INTEGER NOT NULL REFERENCES items(id),
    answer TEXT NOT NULL, latency_s REAL, tokens INTEGER, created TEXT NOT NULL, UNIQUE (run_id, item_id)
);
CREATE TABLE reviewers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE verdicts (
    id INTEGER PRIMARY KEY, prediction_id INTEGER NOT NULL REFERENCES predictions(id),
    reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
    verdict TEXT CHECK (verdict IS NULL OR verdict IN ('correct', 'rephrased', 'wrong')),
    note TEXT, created TEXT NOT NULL, request_id TEXT UNIQUE,
    undoes INTEGER REFERENCES verdicts(id)  -- set on a row that undoes an earlier one
);
CREATE INDEX verdicts_by_reviewer ON verdicts (reviewer_id, prediction_id, id);
CREATE INDEX predictions_by_run ON predictions (run_id);
"""
# 2: what a label question asks (medvlm.labels), and each run's closed questions asked again about another image
# (medvlm.grounding): kept apart from predictions, so they never enter a reviewer's queue.
_SCHEMA_2 = """
ALTER TABLE items ADD COLUMN task TEXT;
CREATE TABLE swapped_predictions (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), item_id INTEGER NOT NULL REFERENCES items(id),
    image_ref TEXT, answer TEXT NOT NULL, created TEXT NOT NULL, UNIQUE (run_id, item_id)
);
"""
# 3: roles. An admin sees every run's model and every reviewer's verdicts, and exports; a reviewer sees their own.
_SCHEMA_3 = """
ALTER TABLE reviewers ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
"""
# 4: VLM-versus-detector reports over a labelled set (medvlm.compare): the report and its plot, for the Evaluation tab.
_SCHEMA_4 = """
CREATE TABLE comparisons (
    id INTEGER PRIMARY KEY, created TEXT NOT NULL, model TEXT NOT NULL, adapter TEXT, detector TEXT NOT NULL,
    dataset TEXT NOT NULL, split TEXT, report TEXT NOT NULL, plot BLOB
);
"""
# 5: the detector's boxes on a comparison answer's image (JSON list of {label, confidence, box}), drawn for physicians.
_SCHEMA_5 = """
ALTER TABLE predictions ADD COLUMN boxes TEXT;
"""


def _schema_6(db: sqlite_utils.Database) -> None:
    """6: an item's image_hash is medvlm.images.fingerprint (its decoded pixels), not a hash of its file's bytes
    (evaluation), its PNG encoding (chat) or its file name (comparisons). Recomputed for every item whose image file
    opens from here; an item whose file is gone, or whose new hash an identical item already holds, keeps its old one."""
    from medvlm.images import fingerprint, load_image

    hashes: dict[str, str | None] = {}
    for item_id, ref in db.execute("SELECT id, image_ref FROM items WHERE image_ref IS NOT NULL").fetchall():
        if ref not in hashes:
            try:
                hashes[ref] = fingerprint(load_image(ref))
            except UserFacingError:
                hashes[ref] = None
        if hashes[ref]:
            try:
                db.execute("UPDATE items SET image_hash = ? WHERE id = ?", [hashes[ref], item_id])
            except sqlite3.IntegrityError:
                pass  # the statement alone is undone; the migration goes on


# 7: label questions' fact, wording template and polarity (medvlm.wordings: consistency across wordings), the
# model's probability of "yes" per answer (calibration), and each run's closed questions asked with no image.
_SCHEMA_7 = """
ALTER TABLE items ADD COLUMN fact TEXT;
ALTER TABLE items ADD COLUMN wording TEXT;
ALTER TABLE items ADD COLUMN reversed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE predictions ADD COLUMN p_yes REAL;
CREATE TABLE blind_predictions (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id), question TEXT NOT NULL, answer TEXT NOT NULL,
    created TEXT NOT NULL, UNIQUE (run_id, question)
);
"""

# 8: the arena (review.arena). A pair is two runs' answers to one item, its sides (which is shown as A) drawn once and
# stored; flagged when an answer names a model or vendor. Votes keep a history like verdicts (undo adds a row).
_SCHEMA_8 = """
CREATE TABLE arena_pairs (
    id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id),
    a_prediction INTEGER NOT NULL REFERENCES predictions(id), b_prediction INTEGER NOT NULL REFERENCES predictions(id),
    flagged INTEGER NOT NULL DEFAULT 0, created TEXT NOT NULL, UNIQUE (a_prediction, b_prediction)
);
CREATE TABLE arena_votes (
    id INTEGER PRIMARY KEY, pair_id INTEGER NOT NULL REFERENCES arena_pairs(id),
    reviewer_id INTEGER NOT NULL REFERENCES reviewers(id),
    vote TEXT CHECK (vote IS NULL OR vote IN ('a', 'b', 'tie', 'both_bad')),
    note TEXT, created TEXT NOT NULL, request_id TEXT UNIQUE, undoes INTEGER REFERENCES arena_votes(id)
);
CREATE INDEX arena_votes_by_reviewer ON arena_votes (reviewer_id, pair_id, id);
"""


def shuffle_key(*parts) -> int:
    """A fixed pseudo-random position for a queue entry (62 bits, so SQLite holds it as a plain integer)."""
    return int.from_bytes(hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()) >> 2


def _schema_9(db: sqlite_utils.Database) -> None:
    """9: what orders the review and arena queues is stored with each entry, so the next item is one indexed read
    (review.queue, review.arena): a prediction's shuffle position and whether physicians should see it first
    (contested, set by medvlm.compare); a pair's shuffle position and its turn in its model pair's lane."""
    for statement in ("ALTER TABLE predictions ADD COLUMN shuffle INTEGER NOT NULL DEFAULT 0",
                      "ALTER TABLE predictions ADD COLUMN contested INTEGER NOT NULL DEFAULT 0",
                      "CREATE INDEX predictions_in_queue ON predictions (contested, shuffle)",
                      "ALTER TABLE arena_pairs ADD COLUMN shuffle INTEGER NOT NULL DEFAULT 0",
                      "ALTER TABLE arena_pairs ADD COLUMN turn INTEGER NOT NULL DEFAULT 0",
                      "CREATE INDEX arena_pairs_in_queue ON arena_pairs (turn, shuffle)"):
        db.execute(statement)
    for prediction, run, item in db.execute("SELECT id, run_id, item_id FROM predictions").fetchall():
        db.execute("UPDATE predictions SET shuffle = ? WHERE id = ?", [shuffle_key(run, item), prediction])
    turns: dict[frozenset, int] = {}
    for pair, a, b, run_a, run_b in db.execute(
            "SELECT ap.id, ap.a_prediction, ap.b_prediction, pa.run_id, pb.run_id FROM arena_pairs ap "
            "JOIN predictions pa ON pa.id = ap.a_prediction JOIN predictions pb ON pb.id = ap.b_prediction ORDER BY ap.id").fetchall():
        lane = frozenset((run_a, run_b))
        turns[lane] = turns.get(lane, -1) + 1
        db.execute("UPDATE arena_pairs SET shuffle = ?, turn = ? WHERE id = ?", [shuffle_key(a, b), turns[lane], pair])
    from medvlm.compare import COMPARISON_ITEMS_SQL, mark_contested

    mark_contested(db, [row[0] for row in db.execute(COMPARISON_ITEMS_SQL).fetchall()])


# Append, never edit: MIGRATIONS[k] takes version k to k + 1 (SQL statements, or a function of the open database).
MIGRATIONS = [_SCHEMA_1, _SCHEMA_2, _SCHEMA_3, _SCHEMA_4, _SCHEMA_5, _schema_6, _SCHEMA_7, _SCHEMA_8, _schema_9]
SCHEMA_VERSION = len(MIGRATIONS)


class History(NamedTuple):
    """A reviewer history table: its name, the column naming what is judged, and the column holding the judgement."""

    table: str
    key: str
    value: str


VERDICT_HISTORY = History("verdicts", "prediction_id", "verdict")
VOTE_HISTORY = History("arena_votes", "pair_id", "vote")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def insert(db: sqlite_utils.Database, table: str, row: dict) -> int:
    """INSERT inside the caller's transaction (sqlite-utils' Table.insert would commit on its own) -> new row id."""
    columns = ", ".join(row)
    return db.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values())).lastrowid


class Store:
    def __init__(self, path: str | Path = DEFAULT_DB, readonly: bool = False):
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise UserFacingError(f"No review database at {self.path}.")
        self.readonly = readonly
        conn = self._connect()
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a crash loses no committed transaction
        self.db = sqlite_utils.Database(conn)
        # One connection writes for every thread of the app: a transaction must not interleave with another thread's.
        self.lock = threading.RLock()
        self._readers = threading.local()
        self._all_readers = []
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{self.path}?mode=ro" if self.readonly else str(self.path)
        try:
            conn = sqlite3.connect(uri, uri=self.readonly, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as e:
            raise UserFacingError(f"Cannot open the review database {self.path}: {e}.") from e
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (autocommit: each statement sees every transaction committed before it)."""
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = self._readers.conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._all_readers.append(conn)
        return conn

    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise UserFacingError(f"{self.path} has schema version {version}; this medvlm knows up to {SCHEMA_VERSION}. Upgrade medvlm.")
        if version == SCHEMA_VERSION:
            return
        if self.readonly:
            raise UserFacingError(f"{self.path} needs a schema upgrade, and it is open read-only.")
        with self.write():
            for k in range(self.version, SCHEMA_VERSION):
                if callable(MIGRATIONS[k]):
                    MIGRATIONS[k](self.db)
                else:
                    for statement in filter(str.strip, MIGRATIONS[k].split(";")):  # executescript would commit midway
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {k + 1}")

    @contextmanager
    def write(self):
        """One write transaction, holding the write lock from its start; a clear error when the file can't be written."""
        if self.readonly:
            raise UserFacingError(f"The review database {self.path.name} is open read-only: nothing was saved.")
        conn = self.db.conn
        with self.lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise UserFacingError(self._write_problem(e)) from e
            try:
                yield self.db
                conn.execute("COMMIT")
            except sqlite3.OperationalError as e:
                conn.execute("ROLLBACK")
                raise UserFacingError(self._write_problem(e)) from e
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: dict | tuple | list = ()) -> list[tuple]:
        """Rows of one read; params by position (a sequence) or by :name (a dict)."""
        try:
            return self._reader().execute(sql, params if isinstance(params, dict) else list(params)).fetchall()
        except sqlite3.OperationalError as e:
            raise UserFacingError(f"Could not read the review database {self.path.name} ({e}).") from e

    def _write_problem(self, error: sqlite3.Error) -> str:
        # These reach reviewers in the app: the file's name, never the server's path.
        text = str(error)
        if "locked" in text or "busy" in text:
            return f"The review database {self.path.name} stayed locked by another writer for {BUSY_TIMEOUT_S:.0f} s: nothing was saved; try again."
        if "readonly" in text or "read-only" in text:
            return f"The review database {self.path.name} is read-only: nothing was saved."
        return f"Could not write to the review database {self.path.name} ({text}): nothing was saved."

    # --- runs, items, predictions --------------------------------------------------------------------------------------

    def add_run(self, model: str, dataset: str, split: str | None = None, adapter: str | None = None,
                settings: dict | None = None) -> int:
        with self.write() as db:
            return insert(db, "runs", {"model": model, "adapter": adapter, "dataset": dataset, "split": split,
                                       "settings": json.dumps(settings or {}, sort_keys=True), "created": now()})

    def find_run(self, model: str, dataset: str, split: str | None, adapter: str | None, settings: dict) -> int | None:
        """The newest run with exactly these model, data and prompt settings (what a rerun resumes), if any."""
        rows = self.query(
            "SELECT id FROM runs WHERE model = ? AND dataset = ? AND split IS ? AND adapter IS ? AND settings = ? ORDER BY id DESC LIMIT 1",
            [model, dataset, split, adapter, json.dumps(settings, sort_keys=True)],
        )
        return rows[0][0] if rows else None

    def add_item(self, dataset: str, question: str, reference: str | None, answer_type: str,
                 image_ref: str | None = None, image_hash: str | None = None, task: str | None = None,
                 fact: str | None = None, wording: str | None = None, reversed: bool = False) -> int:
        """The item's id, adding it unless the same (dataset, image, question, reference) is already stored."""
        row = {"dataset": dataset, "image_ref": image_ref, "image_hash": image_hash, "question": question,
               "reference": reference, "answer_type": answer_type.upper(), "task": task or None, "fact": fact or None,
               "wording": wording or None, "reversed": int(bool(reversed))}
        with self.write() as db:
            found = db.execute(
                "SELECT id FROM items WHERE dataset = ? AND image_hash IS ? AND question = ? AND reference IS ?",
                [dataset, image_hash, question, reference],
            ).fetchone()
            if found:
                return found[0]
            return insert(db, "items", row)

    def add_prediction(self, run_id: int, item_id: int, answer: str, latency_s: float | None = None,
                       tokens: int | None = None, boxes: list[dict] | None = None, p_yes: float | None = None) -> int:
        """The prediction's id; a second answer for the same run and item keeps the first (resumed runs). `boxes`:
        the detector's findings on the image, drawn for the physician who grades this answer; p_yes: the model's
        probability of "yes" against "no" at the answer's first token."""
        with self.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO predictions (run_id, item_id, answer, latency_s, tokens, created, boxes, p_yes, shuffle) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, item_id, str(answer), latency_s, tokens, now(), None if boxes is None else json.dumps(boxes), p_yes,
                 shuffle_key(run_id, item_id)],
            )
            return db.execute("SELECT id FROM predictions WHERE run_id = ? AND item_id = ?", [run_id, item_id]).fetchone()[0]

    def predicted_items(self, run_id: int) -> set[int]:
        return {row[0] for row in self.query("SELECT item_id FROM predictions WHERE run_id = ?", [run_id])}

    def add_swapped_prediction(self, run_id: int, item_id: int, image_ref: str | None, answer: str) -> None:
        """The run's answer to a closed item's question asked about another image (image_ref); the first one stays."""
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO swapped_predictions (run_id, item_id, image_ref, answer, created) VALUES (?, ?, ?, ?, ?)",
                       [run_id, item_id, image_ref, str(answer), now()])

    def swapped_items(self, run_id: int) -> set[int]:
        return {row[0] for row in self.query("SELECT item_id FROM swapped_predictions WHERE run_id = ?", [run_id])}

    def add_blind_prediction(self, run_id: int, question: str, answer: str) -> None:
        """The run's answer to a closed question asked with no image (once per question text); the first one stays."""
        with self.write() as db:
            db.execute("INSERT OR IGNORE INTO blind_predictions (run_id, question, answer, created) VALUES (?, ?, ?, ?)",
                       [run_id, question, str(answer), now()])

    def blind_questions(self, run_id: int) -> set[str]:
        return {row[0] for row in self.query("SELECT question FROM blind_predictions WHERE run_id = ?", [run_id])}

    def add_comparison(self, model: str, adapter: str | None, detector: str, dataset: str, split: str | None,
                       report: dict, plot: bytes | None) -> int:
        with self.write() as db:
            return insert(db, "comparisons", {"created": now(), "model": model, "adapter": adapter, "detector": detector,
                                              "dataset": dataset, "split": split, "report": json.dumps(report), "plot": plot})

    def comparisons(self, limit: int = 10) -> list[dict]:
        """The newest comparison reports first."""
        fields = ("id", "created", "model", "adapter", "detector", "dataset", "split", "report", "plot")
        rows = [dict(zip(fields, row)) for row in self.query(f"SELECT {', '.join(fields)} FROM comparisons ORDER BY id DESC LIMIT ?", [limit])]
        for row in rows:
            row["report"] = json.loads(row["report"])
        return rows

    # --- reviewers and verdicts ----------------------------------------------------------------------------------------

    def add_reviewer(self, name: str, password_hash: str, admin: bool = False) -> int:
        with self.write() as db:
            if db.execute("SELECT 1 FROM reviewers WHERE name = ?", [name]).fetchone():
                raise UserFacingError(f"A reviewer named {name!r} already exists.")
            return insert(db, "reviewers", {"name": name, "password_hash": password_hash, "created": now(), "admin": int(admin)})

    def reviewer(self, name: str) -> dict | None:
        fields = ("id", "name", "password_hash", "created", "admin")
        rows = self.query(f"SELECT {', '.join(fields)} FROM reviewers WHERE name = ?", [name])
        return dict(zip(fields, rows[0])) if rows else None

    def has_reviewers(self) -> bool:
        return bool(self.query("SELECT 1 FROM reviewers LIMIT 1"))

    def record_verdict(self, prediction_id: int, reviewer_id: int, verdict: str | None, note: str | None = None,
                       request_id: str | None = None) -> int:
        """Store a verdict (None withdraws the current one) as a new history row; the same request_id is stored once."""
        if verdict is not None and verdict not in VERDICTS:
            raise UserFacingError(f"A verdict is one of {', '.join(VERDICTS)}, not {verdict!r}.")
        return self._record(VERDICT_HISTORY, prediction_id, reviewer_id, verdict, note, request_id)

    def undo_last(self, reviewer_id: int) -> int | None:
        """Undo the reviewer's latest verdict that is not undone yet (repeatable): a new row restores what that
        prediction's verdict was before it. -> the prediction id, or None when there is nothing to undo."""
        return self._undo_last(VERDICT_HISTORY, reviewer_id)

    def current_verdict(self, prediction_id: int, reviewer_id: int) -> str | None:
        rows = self.query(
            "SELECT verdict FROM verdicts WHERE prediction_id = ? AND reviewer_id = ? ORDER BY id DESC LIMIT 1",
            [prediction_id, reviewer_id],
        )
        return rows[0][0] if rows else None

    def history(self, prediction_id: int, reviewer_id: int) -> list[str | None]:
        return [row[0] for row in self.query(
            "SELECT verdict FROM verdicts WHERE prediction_id = ? AND reviewer_id = ? ORDER BY id", [prediction_id, reviewer_id])]

    def current_verdicts(self, reviewer_id: int | None = None) -> list[dict]:
        """Every reviewer's (or one reviewer's) current, not withdrawn, verdict on every prediction."""
        return self._current(VERDICT_HISTORY, reviewer_id)

    # --- histories: verdicts and arena votes alike ---------------------------------------------------------------
    # Append-only: a change, a withdrawal (None) or an undo is a new row; the latest row per (item, reviewer) counts.

    def _record(self, h: History, key: int, reviewer_id: int, value: str | None, note: str | None, request_id: str | None) -> int:
        if note is not None and not isinstance(note, str):  # through the API a note can be any JSON value
            raise UserFacingError(f"A note is text, not {type(note).__name__}: nothing was saved.")
        with self.write() as db:
            if request_id:
                done = db.execute(f"SELECT id FROM {h.table} WHERE request_id = ?", [request_id]).fetchone()
                if done:
                    return done[0]
            return insert(db, h.table, {h.key: key, "reviewer_id": reviewer_id, h.value: value,
                                        "note": (note or "").strip() or None, "created": now(), "request_id": request_id})

    def _undo_last(self, h: History, reviewer_id: int) -> int | None:
        with self.write() as db:
            action = db.execute(
                f"""SELECT id, {h.key} FROM {h.table} WHERE reviewer_id = ? AND undoes IS NULL
                    AND id NOT IN (SELECT undoes FROM {h.table} WHERE undoes IS NOT NULL) ORDER BY id DESC LIMIT 1""",
                [reviewer_id],
            ).fetchone()
            if action is None:
                return None
            action_id, key = action
            before = db.execute(
                f"SELECT {h.value}, note FROM {h.table} WHERE {h.key} = ? AND reviewer_id = ? AND id < ? ORDER BY id DESC LIMIT 1",
                [key, reviewer_id, action_id],
            ).fetchone()
            insert(db, h.table, {h.key: key, "reviewer_id": reviewer_id, h.value: before[0] if before else None,
                                 "note": before[1] if before else None, "created": now(), "undoes": action_id})
            return key

    def _current(self, h: History, reviewer_id: int | None) -> list[dict]:
        sql = f"""
            SELECT v.{h.key}, v.reviewer_id, v.{h.value}, v.note FROM {h.table} v
            JOIN (SELECT {h.key}, reviewer_id, MAX(id) AS id FROM {h.table} WHERE ? IS NULL OR reviewer_id = ?
                  GROUP BY {h.key}, reviewer_id) latest
              ON latest.id = v.id
            WHERE v.{h.value} IS NOT NULL
        """
        names = (h.key, "reviewer_id", h.value, "note")
        return [dict(zip(names, row)) for row in self.query(sql, [reviewer_id, reviewer_id])]

    # --- the arena ------------------------------------------------------------------------------------------------

    def add_arena_pair(self, item_id: int, a_prediction: int, b_prediction: int, flagged: bool = False, turn: int = 0) -> int | None:
        """A pair of answers to one item, a_prediction shown as A -> its id; None when the two are paired already
        (either way round). turn: its place in its model pair's lane of the arena queue (review.arena)."""
        with self.write() as db:
            if db.execute("SELECT 1 FROM arena_pairs WHERE a_prediction IN (?, ?) AND b_prediction IN (?, ?)",
                          [a_prediction, b_prediction, a_prediction, b_prediction]).fetchone():
                return None
            return insert(db, "arena_pairs", {"item_id": item_id, "a_prediction": a_prediction, "b_prediction": b_prediction,
                                              "flagged": int(flagged), "created": now(), "turn": turn,
                                              "shuffle": shuffle_key(a_prediction, b_prediction)})

    def record_vote(self, pair_id: int, reviewer_id: int, vote: str | None, note: str | None = None,
                    request_id: str | None = None) -> int:
        """Store a vote (None withdraws the current one) as a new history row; the same request_id is stored once."""
        if vote is not None and vote not in OUTCOMES:
            raise UserFacingError(f"A vote is one of {', '.join(OUTCOMES)}, not {vote!r}.")
        return self._record(VOTE_HISTORY, pair_id, reviewer_id, vote, note, request_id)

    def undo_last_vote(self, reviewer_id: int) -> int | None:
        """Undo the reviewer's latest vote not undone yet (repeatable): a new row restores that pair's vote before it.
        -> the pair id, or None when there is nothing to undo."""
        return self._undo_last(VOTE_HISTORY, reviewer_id)

    def current_votes(self, reviewer_id: int | None = None) -> list[dict]:
        """Every reviewer's (or one reviewer's) current, not withdrawn, vote on every pair."""
        return self._current(VOTE_HISTORY, reviewer_id)

    def close(self) -> None:
        for conn in self._all_readers:
            conn.close()
        self.db.conn.close()
