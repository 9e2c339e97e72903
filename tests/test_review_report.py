"""The report over a hand-built store: the three automatic scorers, physician accuracy with its interval, the
auto-versus-physician disagreements, kappa, and the CSV/JSONL export."""
import csv
import json

import pytest

from medvlm.store import Store
from review import report


@pytest.fixture
def graded(tmp_path):
    """One run, 4 predictions, two reviewers who agree on 3 of 4."""
    store = Store(tmp_path / "r.db")
    run = store.add_run("medvlm-tiny", "vqa-rad", "test")
    answers = [("Is it normal?", "no", "CLOSED", "The scan looks normal"),  # strict wrong, LLaVA-Med hit ("no" in normal)
               ("Is there a mass?", "yes", "CLOSED", "yes"),
               ("Which organ?", "liver", "OPEN", "the liver"),
               ("Which plane?", "axial", "OPEN", "an axial slice")]  # strict EM wrong, rephrased
    ids = []
    for k, (q, ref, kind, answer) in enumerate(answers):
        item = store.add_item("vqa-rad", q, ref, kind, image_hash=f"h{k}")
        ids.append(store.add_prediction(run, item, answer))
    ada, bob = store.add_reviewer("ada", "h"), store.add_reviewer("bob", "h")
    for p, a, b in zip(ids, ["wrong", "correct", "correct", "rephrased"], ["wrong", "correct", "correct", "correct"]):
        store.record_verdict(p, ada, a)
        store.record_verdict(p, bob, b)
    return store


def test_run_row_has_every_score(graded):
    (row,) = report.run_rows(graded)
    assert row["questions"] == 4 and row["reviewed"] == 4
    assert row["strict_closed"] == 50.0 and row["strict_exact"] == 50.0
    assert row["llava_med_closed"] == 100.0  # "no" inside "normal" counts for LLaVA-Med
    assert row["lenient_closed"] == 100.0
    assert row["physician_accuracy"] == 75.0 and row["physician_ci95"] == (30.1, 95.4)
    assert row["auto_wrong_physician_right"] == 1  # "an axial slice": EM wrong, physicians say right
    assert row["auto_right_physician_wrong"] == 0
    assert row["verdict_mix"] == {"wrong": 2, "correct": 5, "rephrased": 1}
    # kappa over (wrong,wrong) (correct,correct) (correct,correct) (rephrased,correct): po 0.75,
    # pe = (1*1 + 2*3 + 1*0) / 16 = 7/16 -> (0.75 - 0.4375) / 0.5625
    assert row["kappa_kind"] == "Cohen" and row["kappa"] == pytest.approx(0.556, abs=1e-3)


def test_each_automatic_scorer_against_the_physicians(graded):
    """Physicians' majority: wrong, right, right, right. Strict says wrong, right, right (EM), wrong; LLaVA-Med and
    the lenient rule say right four times: 75 % raw agreement, yet kappa 0: they agree only by calling all right."""
    rows = {(r["scorer"], r["questions"]): r for r in report.scorer_rows(graded)}
    strict = rows[("strict", "all")]
    # po 3/4; pe = (2*1 + 2*3) / 16 = 1/2 -> kappa 1/2; se = sqrt(.75 * .25 / 4) / .5 = 0.433
    assert (strict["graded"], strict["agreement"], strict["kappa"]) == (4, 75.0, 0.5)
    assert strict["kappa_ci95"] == (-0.349, 1.0)  # clipped at 1
    assert rows[("strict", "closed")]["kappa"] == 1.0 and rows[("strict", "open")]["kappa"] == 0.0
    for scorer in ("LLaVA-Med, run_eval.py before #35", "LLaVA-Med, after #35", "lenient (notebook)"):
        assert (rows[(scorer, "all")]["agreement"], rows[(scorer, "all")]["kappa"]) == (75.0, 0.0), scorer
        assert rows[(scorer, "all")]["auto_right_physician_wrong"] == 1  # "looks normal" read as a "no"


def test_withdrawn_verdicts_and_question_type_filter(graded):
    ada = graded.reviewer("ada")["id"]
    graded.record_verdict(1, ada, None)
    (closed,) = report.run_rows(graded, "CLOSED")
    assert closed["questions"] == 2 and closed["reviewed"] == 2
    assert closed["kappa_items"] == 1  # ada withdrew her verdict on the first


def test_cli_prints_and_exports(graded, tmp_path, capsys):
    assert report.main(["--db", str(graded.path), "--export", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "physician acc" in out and "75.0" in out and "before its fix #35" in out
    assert "Automatic scorers against the physicians" in out and "lenient (notebook)" in out
    rows = list(csv.DictReader(open(tmp_path / "out" / "verdicts.csv")))
    assert len(rows) == 8 and {r["reviewer"] for r in rows} == {"ada", "bob"}
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 4
    assert json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])["answer"]


def test_cli_on_an_empty_or_missing_db(tmp_path, capsys):
    assert report.main(["--db", str(tmp_path / "none.db")]) == 2
    Store(tmp_path / "empty.db").close()
    assert report.main(["--db", str(tmp_path / "empty.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "No review database" in err[0] and "no predictions yet" in err[1]


def test_image_reliance_and_label_tasks(tmp_path, capsys):
    """Hand-built: 4 closed label questions right about their own images; about swapped images 1 of them stays
    right (a 75-point drop). Tasks are scored apart, with the balanced yes/no accuracy and their own drops."""
    store = Store(tmp_path / "g.db")
    run = store.add_run("medvlm-tiny", "labels:brain", "val")
    cases = [("Is there a tumor?", "yes", "tumor_presence", "yes", "no"),
             ("Is there a tumor?", "no", "tumor_presence", "no", "no"),
             ("What type?", "glioma", "tumor_type", "glioma", "meningioma"),
             ("What type?", "meningioma", "tumor_type", "meningioma", "glioma")]
    for k, (q, ref, task, own, swapped) in enumerate(cases):
        item = store.add_item("labels:brain", q, ref, "CLOSED", image_ref=f"{k}.jpg", image_hash=f"h{k}", task=task)
        store.add_prediction(run, item, own)
        store.add_swapped_prediction(run, item, f"{(k + 1) % 4}.jpg", swapped)
    (row,) = report.run_rows(store)
    assert row["strict_closed"] == 100.0 and row["swapped_closed"] == 25.0 and row["image_reliance"] == 75.0
    assert report.run_rows(store, "OPEN") == []
    tasks = {r["task"]: r for r in report.task_rows(store)}
    assert tasks["tumor_presence"]["yes_no_balanced"] == 100.0 and tasks["tumor_type"]["score"] == 100.0
    assert tasks["tumor_type"]["yes_no_balanced"] is None
    # presence: "no" to both swapped images, right on the tumour-free one (50); type: wrong on both swaps (0)
    assert tasks["tumor_presence"]["image_reliance"] == 50.0 and tasks["tumor_type"]["image_reliance"] == 100.0
    store.close()
    assert report.main(["--db", str(tmp_path / "g.db")]) == 0
    out = capsys.readouterr().out
    assert "image reliance" in out and "Label questions, per task" in out and "tumor_presence" in out


def test_the_headline_pools_each_models_runs():
    """One row per model: physicians' accuracy pooled over its runs (not averaged), strict closed and image reliance
    weighted by their questions, the worst wording of its label tasks, its arena score; None where it has none."""
    from review.report import headline_rows

    def run(model, reviewed, right, closed_n, strict, swapped_n, reliance):
        return {"model": model, "questions": closed_n, "reviewed": reviewed, "physician_right": right, "closed_n": closed_n,
                "strict_closed": strict, "swapped_n": swapped_n, "image_reliance": reliance}

    runs = [run("m", 10, 9, 100, 80.0, 100, 10.0), run("m", 30, 15, 300, 60.0, 0, None), run("n", 0, 0, 50, 50.0, 50, 0.0)]
    tasks = [{"model": "m", "worst_wording": 70.0}, {"model": "m", "worst_wording": 55.0}, {"model": "n", "worst_wording": None}]
    ranked = [{"model": "m", "score": 1000.0, "ci95": [1000.0, 1000.0]}, {"model": "x", "score": 900.0, "ci95": [850.0, 950.0]}]
    rows = {r["model"]: r for r in headline_rows(runs, tasks, ranked)}
    assert set(rows) == {"m", "n", "x"}  # x: voted on in the arena, never evaluated
    m = rows["m"]
    assert (m["runs"], m["answers"], m["reviewed"], m["physician_accuracy"]) == (2, 400, 40, 60.0)  # 24 of 40, not (90 + 50) / 2
    assert m["physician_ci95"][0] < 60.0 < m["physician_ci95"][1]
    assert (m["strict_closed"], m["image_reliance"], m["worst_wording"], m["arena_score"]) == (65.0, 10.0, 55.0, 1000.0)
    assert rows["n"]["physician_accuracy"] is None and rows["n"]["worst_wording"] is None and rows["n"]["arena_score"] is None
    assert rows["x"]["runs"] == 0 and rows["x"]["arena_ci95"] == (850.0, 950.0)
