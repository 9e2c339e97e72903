"""python -m medvlm.evaluate over shared VQA-RAD items with the default tiny model: answers stored for review,
scored on the spot, closed questions asked again about swapped images (stored apart, never queued for review),
and a rerun resumes the same run instead of answering again."""
import re

import pytest
from conftest import SHARED_DATA, VQA_RAD

from medvlm.evaluate import main
from medvlm.store import Store

BRAIN = SHARED_DATA / "brain-tumor"


def test_evaluation_stores_scores_and_resumes(tmp_path, capsys):
    db = tmp_path / "eval.db"
    args = ["--model", "medvlm-tiny", "--data", str(VQA_RAD / "vqa_rad.jsonl"), "--split", "test", "--db", str(db),
            "--batch_size", "4", "--max_new_tokens", "8", "--device", "cpu"]
    assert main(args + ["--limit", "3"]) == 0
    first = capsys.readouterr()
    assert "0 already answered" in first.err and "closed_accuracy" in first.out

    assert main(args + ["--limit", "6"]) == 0  # resumed halfway: only the 3 new questions are answered
    second = capsys.readouterr()
    assert "3 already answered" in second.err and re.search(r"^questions\s+6$", second.out, re.M)
    assert re.search(r"^swapped_closed_accuracy\s+[\d.]+$", second.out, re.M) and "image_reliance" in second.out

    store = Store(db)
    assert store.query("SELECT COUNT(*) FROM runs")[0][0] == 1
    rows = store.query("SELECT answer, latency_s, tokens FROM predictions ORDER BY item_id")
    assert len(rows) == 6 and all(answer and latency > 0 and tokens >= 1 for answer, latency, tokens in rows)
    assert store.query("SELECT COUNT(DISTINCT image_hash) FROM items")[0][0] >= 2
    closed = store.query("SELECT id, image_ref FROM items WHERE answer_type = 'CLOSED'")
    swapped = dict(store.query("SELECT item_id, image_ref FROM swapped_predictions"))
    assert closed and set(swapped) == {item for item, _ in closed}
    assert all(swapped[item] != image for item, image in closed)  # each asked about another image
    from review.queue import pending, progress

    reviewer = store.add_reviewer("dr.x", "hash")
    assert len(pending(store, reviewer, limit=100)) == 6 and progress(store, reviewer) == (0, 6)  # the swapped answers are not for review


def test_label_questions_are_scored_per_task(tmp_path, capsys):
    db = tmp_path / "labels.db"
    args = ["--model", "medvlm-tiny", "--data", f"labels:{BRAIN / 'data.yaml'}", "--split", "val", "--db", str(db),
            "--batch_size", "8", "--max_new_tokens", "6", "--device", "cpu", "--limit", "24"]  # two slices, every wording
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^task tumor_presence\s+[\d.]+ \(closed accuracy, n=20, yes/no balanced [\d.]+, "
                     r"image reliance -?[\d.]+ \(swapped [\d.]+\)\)$", out, re.M)
    assert re.search(r"^    10 wordings: worst [\d.]+ \('.+'\), mean [\d.]+, reversed polarity [\d.]+, consistent on [\d.]+ % .* of 2 images$",
                     out, re.M)
    assert re.search(r"^    answers: ideal [\d.]+ %, fragile [\d.]+ %, dangerous [\d.]+ %, worst [\d.]+ %$", out, re.M)
    assert re.search(r"^yes/no calibration\s+ECE 0\.\d+ over \d+ answers$", out, re.M)
    store = Store(db)
    assert store.query("SELECT COUNT(*) FROM items WHERE task = 'tumor_presence' AND wording IS NOT NULL")[0][0] == 20
    assert store.query("SELECT COUNT(*) FROM items WHERE reversed = 1")[0][0] == 6
    assert store.query("SELECT COUNT(*) FROM predictions WHERE p_yes BETWEEN 0 AND 1")[0][0] >= 20
    blind = store.query("SELECT COUNT(*), COUNT(DISTINCT question) FROM blind_predictions")[0]
    assert blind[0] == blind[1] and blind[0] >= 10  # each distinct closed question once, without an image
    assert main(args) == 0  # resumed: the same figures, nothing asked again
    assert capsys.readouterr().out == out


@pytest.mark.parametrize("argv, message", [
    (["--model", "medvlm-tiny", "--data", "missing.jsonl"], "No data file"),
    (["--model", "no-such-model", "--data", str(VQA_RAD / "vqa_rad.jsonl")], "no-such-model"),
])
def test_bad_inputs_are_one_line_errors(argv, message, tmp_path, capsys):
    assert main(argv + ["--db", str(tmp_path / "x.db"), "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
