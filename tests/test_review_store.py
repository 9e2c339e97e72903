"""The review store on real SQLite files: schema and migrations, verdict history, duplicates, concurrent writers
(threads and processes), a writer killed mid-transaction, and read-only or locked files."""
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from conftest import REPO

from medvlm.errors import UserFacingError
from medvlm.store import SCHEMA_VERSION, Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "medvlm.db")
    yield s
    s.close()


def seeded(store: Store, predictions: int = 3) -> tuple[int, list[int]]:
    """A reviewer and `predictions` predictions of one run."""
    run = store.add_run("medvlm-tiny", "vqa-rad", "test", settings={"max_new_tokens": 16})
    ids = []
    for k in range(predictions):
        item = store.add_item("vqa-rad", f"Question {k}?", "yes", "closed", image_ref=f"img{k}.jpg", image_hash=f"h{k}")
        ids.append(store.add_prediction(run, item, "Yes", latency_s=0.1, tokens=2))
    reviewer = store.add_reviewer("ada", "hash")
    return reviewer, ids


def test_schema_wal_foreign_keys_and_version(store):
    assert store.version == SCHEMA_VERSION
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"runs", "items", "predictions", "reviewers", "verdicts"} <= set(store.db.table_names())
    with pytest.raises(sqlite3.IntegrityError):
        store.add_prediction(run_id=999, item_id=999, answer="x")  # foreign keys are enforced


def test_reopening_migrates_nothing_and_a_newer_file_is_refused(tmp_path):
    path = tmp_path / "m.db"
    Store(path).close()
    assert Store(path).version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UserFacingError, match="Upgrade medvlm"):
        Store(path)


def test_items_and_predictions_are_not_duplicated(store):
    run = store.add_run("m", "d")
    a = store.add_item("d", "Is it?", "yes", "CLOSED", image_hash="h")
    assert store.add_item("d", "Is it?", "yes", "CLOSED", image_hash="h") == a
    first = store.add_prediction(run, a, "yes")
    assert store.add_prediction(run, a, "no") == first  # a resumed run keeps its first answer
    assert store.predicted_items(run) == {a}


def test_changing_a_verdict_keeps_history_and_one_current(store):
    reviewer, (p, *_) = seeded(store)
    store.record_verdict(p, reviewer, "wrong")
    store.record_verdict(p, reviewer, "rephrased", note="same meaning")
    assert store.current_verdict(p, reviewer) == "rephrased"
    assert store.history(p, reviewer) == ["wrong", "rephrased"]
    store.record_verdict(p, reviewer, None)  # withdrawn (undo)
    assert store.current_verdict(p, reviewer) is None
    assert store.current_verdicts() == []
    with pytest.raises(UserFacingError, match="correct, rephrased, wrong"):
        store.record_verdict(p, reviewer, "maybe")


def test_resubmitted_request_is_stored_once(store):
    reviewer, (p, *_) = seeded(store)
    first = store.record_verdict(p, reviewer, "correct", request_id="click-1")
    assert store.record_verdict(p, reviewer, "correct", request_id="click-1") == first
    assert store.db["verdicts"].count == 1


def test_eight_threads_lose_no_verdict(store):
    reviewers = [store.add_reviewer(f"r{k}", "h") for k in range(8)]
    _, predictions = seeded(store, predictions=25)
    errors = []

    def grade(reviewer):
        try:
            for p in predictions:
                store.record_verdict(p, reviewer, "correct", request_id=f"{reviewer}-{p}")
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=grade, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.db["verdicts"].count == 8 * 25


WRITER = """
import sys
from medvlm.store import Store
store = Store(sys.argv[1])
reviewer = store.reviewer(sys.argv[2])["id"]
record = store.record_vote if sys.argv[4:] == ["votes"] else store.record_verdict  # on pair p, or on prediction p
for p in range(1, int(sys.argv[3]) + 1):
    record(p, reviewer, "b" if sys.argv[4:] == ["votes"] else "wrong", request_id=f"{sys.argv[2]}-{p}")
    print(p, flush=True)
"""


def test_eight_processes_lose_no_verdict(tmp_path):
    path = tmp_path / "shared.db"
    store = Store(path)
    _, predictions = seeded(store, predictions=40)
    for k in range(8):
        store.add_reviewer(f"p{k}", "h")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{k}", "40"], env=env, stdout=subprocess.PIPE)
               for k in range(8)]
    for w in writers:
        assert w.wait(timeout=120) == 0
    assert store.db.execute("SELECT COUNT(*) FROM verdicts WHERE verdict = 'wrong'").fetchone()[0] == 8 * 40


@pytest.mark.parametrize("kind", ["verdicts", "votes"])
def test_a_writer_killed_mid_write_leaves_a_consistent_file(tmp_path, kind):
    """Verdicts (Review tab) and arena votes alike: every acknowledged write survives a SIGKILL."""
    from medvlm.store import insert, now

    path = tmp_path / "killed.db"
    store = Store(path)
    _, predictions = seeded(store, predictions=5000)
    if kind == "votes":  # a second run's answers to the same items, paired with the first's: 5000 arena pairs
        other = store.add_run("llava-1.5-7b", "vqa-rad", "test")
        with store.write() as db:
            for prediction, (item,) in zip(predictions, db.execute("SELECT id FROM items ORDER BY id").fetchall()):
                answer = insert(db, "predictions", {"run_id": other, "item_id": item, "answer": "No", "created": now()})
                insert(db, "arena_pairs", {"item_id": item, "a_prediction": prediction, "b_prediction": answer, "created": now()})
    store.add_reviewer("victim", "h")
    store.close()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "victim", "5000", kind],
                              env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    committed = 0
    while committed < 200:  # let it get going, then kill it without warning
        committed = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    acknowledged = [int(line) for line in writer.stdout.read().split()]  # printed before the kill, still in the pipe
    committed = max([committed] + acknowledged)
    assert committed < 5000, "the writer finished before it was killed"
    reopened = Store(path)
    assert reopened.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = reopened.db.execute(f"SELECT COUNT(*) FROM {'arena_votes' if kind == 'votes' else 'verdicts'}").fetchone()[0]
    assert committed <= stored <= committed + 1  # every acknowledged write is there; at most the one in flight more
    record = reopened.record_vote if kind == "votes" else reopened.record_verdict
    assert record(1, reopened.reviewer("ada")["id"], "tie" if kind == "votes" else "correct")  # and it takes new writes


def test_read_only_and_locked_files_say_so_and_lose_nothing(tmp_path, monkeypatch):
    path = tmp_path / "ro.db"
    store = Store(path)
    reviewer, (p, *_) = seeded(store)
    store.record_verdict(p, reviewer, "correct")
    store.close()

    readonly = Store(path, readonly=True)
    with pytest.raises(UserFacingError, match="read-only: nothing was saved"):
        readonly.record_verdict(p, reviewer, "wrong")
    assert readonly.current_verdict(p, reviewer) == "correct"

    import medvlm.store

    monkeypatch.setattr(medvlm.store, "BUSY_TIMEOUT_S", 0.2)
    waiting = Store(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        start = time.monotonic()
        with pytest.raises(UserFacingError, match="locked by another writer") as locked:
            waiting.record_verdict(p, reviewer, "wrong")
        assert time.monotonic() - start < 5
        assert str(tmp_path) not in str(locked.value)  # reviewers see it: the file's name, not the server's path
    finally:
        blocker.execute("ROLLBACK")
    assert Store(path).current_verdict(p, reviewer) == "correct"


def test_the_plain_sqlite_utils_cli_reads_it(store):
    seeded(store)
    import json
    from pathlib import Path

    cli = Path(sys.executable).parent / "sqlite-utils"
    out = subprocess.run([str(cli), "tables", str(store.path), "--counts"], capture_output=True, text=True, check=True).stdout
    counts = {row["table"]: row["count"] for row in json.loads(out)}
    assert counts["predictions"] == 3 and counts["reviewers"] == 1


def test_undo_is_repeatable_and_restores_the_previous_verdict(store):
    reviewer, (p1, p2, _) = seeded(store)
    store.record_verdict(p1, reviewer, "wrong")
    store.record_verdict(p2, reviewer, "correct")
    store.record_verdict(p1, reviewer, "rephrased")
    assert store.undo_last(reviewer) == p1 and store.current_verdict(p1, reviewer) == "wrong"
    assert store.undo_last(reviewer) == p2 and store.current_verdict(p2, reviewer) is None
    assert store.undo_last(reviewer) == p1 and store.current_verdict(p1, reviewer) is None
    assert store.undo_last(reviewer) is None
    assert store.history(p1, reviewer) == ["wrong", "rephrased", "wrong", None]  # nothing erased


def test_chat_answers_keep_their_image_and_are_stored_once(store, vqa_rad_image):
    from medvlm.images import load_image
    from review import chat_answers

    image = load_image(vqa_rad_image)
    first = chat_answers.submit(store, "medvlm-tiny", None, image, "Is this a CT?", "yes")
    assert chat_answers.submit(store, "medvlm-tiny", None, image.copy(), "Is this a CT?", "yes") == first
    chat_answers.submit(store, "medvlm-tiny", None, None, "What is a pneumothorax?", "Air in the pleural space.")
    rows = store.query("SELECT i.image_ref, i.answer_type, i.reference FROM items i ORDER BY i.id")
    assert rows[0][1] == "CLOSED" and rows[1] == (None, "OPEN", None)
    assert load_image(rows[0][0]).size == image.size  # the kept copy opens
    assert store.query("SELECT COUNT(*) FROM runs WHERE dataset = 'chat'")[0][0] == 1


def test_schema_6_rekeys_items_by_their_pixels(tmp_path, vqa_rad_image):
    """Items stored before schema 6 (image_hash from file bytes, PNG bytes or a file name) get the pixel fingerprint
    of their image, so a resumed evaluation finds them; an item whose file is gone keeps its hash."""
    import sqlite3

    from medvlm.images import fingerprint, load_image
    from medvlm.store import MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)  # a database as schema 5 left it
    for migration in MIGRATIONS[:5]:
        for statement in filter(str.strip, migration.split(";")):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 5")
    insert = "INSERT INTO items (dataset, question, reference, answer_type, image_ref, image_hash) VALUES (?, ?, ?, 'CLOSED', ?, ?)"
    kept = conn.execute(insert, ["vqa-rad", "Is it?", "yes", str(vqa_rad_image), "file-bytes-hash"]).lastrowid
    gone = conn.execute(insert, ["vqa-rad", "Is it?", "no", str(tmp_path / "gone.jpg"), "old"]).lastrowid
    conn.close()
    store = Store(path)
    hashes = dict(store.query("SELECT id, image_hash FROM items"))
    assert store.version == SCHEMA_VERSION and hashes[gone] == "old"
    assert hashes[kept] == fingerprint(load_image(vqa_rad_image))
    assert store.add_item("vqa-rad", "Is it?", "yes", "CLOSED", image_hash=fingerprint(load_image(vqa_rad_image))) == kept


def test_schema_9_stores_what_orders_the_queues(tmp_path):
    """A database from schema 8 gets each prediction's and pair's shuffle position, each pair's turn in its lane
    of two runs, and the contested comparison answers marked; the queues then read them."""
    import sqlite3

    import sqlite_utils

    from medvlm.store import MIGRATIONS, shuffle_key
    from review import arena, queue

    path = tmp_path / "eight.db"
    db = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))  # a database as schema 8 left it
    for migration in MIGRATIONS[:8]:
        if callable(migration):
            migration(db)
        else:
            for statement in filter(str.strip, migration.split(";")):
                db.execute(statement)
    db.execute("PRAGMA user_version = 8")
    when = "2026-01-01"
    runs = [db.execute("INSERT INTO runs (model, dataset, settings, created) VALUES (?, 'd', ?, ?)", [model, settings, when]).lastrowid
            for model, settings in (("m1", "{}"), ("m2", "{}"), ("yolo", '{"kind": "comparison", "side": "detector"}'),
                                    ("vlm", '{"kind": "comparison", "side": "vlm"}'))]
    items = [db.execute("INSERT INTO items (dataset, question, reference, answer_type, image_hash) VALUES ('d', ?, 'yes', 'CLOSED', ?)",
                        [f"q{k}", str(k)]).lastrowid for k in range(3)]

    def answer(run, item, text):
        return db.execute("INSERT INTO predictions (run_id, item_id, answer, created) VALUES (?, ?, ?, ?)", [run, item, text, when]).lastrowid

    plain = [(answer(runs[0], item, "yes"), answer(runs[1], item, "no")) for item in items]
    pairs = [db.execute("INSERT INTO arena_pairs (item_id, a_prediction, b_prediction, created) VALUES (?, ?, ?, ?)",
                        [item, a, b, when]).lastrowid for item, (a, b) in zip(items, plain)]
    agree = [answer(runs[2], items[0], "yes, glioma"), answer(runs[3], items[0], "yes")]
    disagree = [answer(runs[2], items[1], "yes, glioma"), answer(runs[3], items[1], "no")]
    db.conn.close()

    store = Store(path)
    assert store.version == SCHEMA_VERSION
    contested = {row[0] for row in store.query("SELECT id FROM predictions WHERE contested = 1")}
    assert contested == set(disagree) and not contested & set(agree)
    shuffles = dict(store.query("SELECT id, shuffle FROM predictions"))
    assert shuffles[plain[0][0]] == shuffle_key(runs[0], items[0]) and len(set(shuffles.values())) == len(shuffles)
    assert [row[0] for row in store.query("SELECT turn FROM arena_pairs ORDER BY id")] == [0, 1, 2]
    reviewer = store.add_reviewer("ada", "h")
    assert {p["prediction_id"] for p in queue.pending(store, reviewer, limit=2)} == set(disagree)
    assert sorted(p["pair_id"] for p in arena.pending(store, reviewer, limit=10)) == pairs
