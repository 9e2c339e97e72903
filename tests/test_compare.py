"""VLM versus detector over a labelled set: the report's arithmetic on hand-made cases (figures computed by hand),
the VLM answer reader on hand-written answers, and `python -m medvlm.compare` on four shared val images with the real
models: report, plot, resume, review runs, every held-out wording, images that are no brain MRI, bad arguments."""
import json
import shutil

import pytest
from conftest import SHARED_DATA

from medvlm.compare import NOT_BRAIN_WORDINGS, PRESENCE_WORDINGS, TYPE_WORDINGS, main, presence_said, vlm_finds_tumour
from medvlm.comparison import Case, iou, report, summary_rows, vlm_type, wording_report
from medvlm.store import Store

NAMES = ["pituitary", "meningioma", "glioma"]
BRAIN = SHARED_DATA / "brain-tumor"


def case(image, label, presence, kind, box_iou=None):
    return Case(image, label, dict(zip(("detector", "vlm", "vlm_grounded"), presence)),
                dict(zip(("detector", "vlm", "vlm_grounded"), kind)), box_iou)


CASES = [
    case("A", "glioma", (True, True, True), ("glioma", "glioma", "glioma"), 0.7),
    case("B", "meningioma", (True, None, True), ("glioma", None, "meningioma"), 0.3),  # VLM unclear
    case("C", None, (False, True, False), (None, None, None)),  # VLM false positive; grounding fixes it
    case("D", None, (True, False, True), ("pituitary", None, None)),  # detector false positive; grounding copies it
    case("E", "pituitary", (False, True, True), (None, "pituitary", "pituitary"), 0.0),  # detector miss
]


def test_report_gives_the_hand_computed_figures():
    r = report(CASES, NAMES)
    assert (r["images"], r["tumour_images"]) == (5, 3)
    detector, vlm, grounded = (r["presence"][s] for s in ("detector", "vlm", "vlm_grounded"))
    assert (detector["sensitivity"]["value"], detector["specificity"]["value"], detector["accuracy"]["value"]) == (66.67, 50.0, 60.0)
    assert (vlm["sensitivity"]["value"], vlm["specificity"]["value"], vlm["accuracy"]["value"], vlm["unclear"]) == (66.67, 50.0, 60.0, 1)
    assert (grounded["sensitivity"]["value"], grounded["accuracy"]["value"]) == (100.0, 80.0)
    assert detector["sensitivity"]["ci95"] == [20.8, 93.9]  # Wilson, 2 of 3
    assert [r["type"][s]["value"] for s in ("detector", "vlm", "vlm_grounded")] == [33.33, 66.67, 100.0]
    assert r["detector_box_iou50"]["value"] == 33.33
    kappa = r["agreement"]["kappa_vlm_detector"]
    assert kappa["n"] == 4 and kappa["value"] == -0.5  # A, C, D, E: agreement 1/4, chance 1/2
    assert r["agreement"]["who_was_right"] == {"both_right": 1, "detector_only_right": 2, "vlm_only_right": 2, "both_wrong": 0}
    assert r["grounding"] == {"presence": {"to_right": 2, "to_wrong": 1}, "type": {"to_right": 1, "to_wrong": 0}}
    assert r["wrong"] == {"detector": ["B", "D", "E"], "vlm": ["B", "C"], "vlm_grounded": ["D"]}
    assert r["per_class"]["none"]["vlm_grounded"] == {"n": 2, "presence_accuracy": 50.0, "type_accuracy": None}
    assert r["per_class"]["meningioma"]["vlm_grounded"]["type_accuracy"] == 100.0


@pytest.mark.parametrize("answer, finds", [
    ("Yes", True), ("No.", False), ("There is a large mass in the left frontal lobe.", True),
    ("No evidence of tumour.", False), ("Pituitary adenoma", True), ("Findings are consistent with glioblastoma.", True),
    ("Unremarkable brain MRI.", False), ("Negative for malignancy", False), ("The scan shows no abnormality", False),
    ("No, the brain is normal.", False), ("Yes, there is a tumor but no edema.", True),
    # unclear: hedges, mass effect alone, clauses that disagree, nothing said
    ("No mass effect.", None), ("Mass effect with midline shift", None), ("Possibly a tumour.", None),
    ("A glioma is not excluded.", None), ("Tumor cannot be ruled out", None), ("There may be a lesion", None),
    ("No tumor seen; however, there is a mass.", None), ("I am not sure.", None), ("axial T1", None), ("", None),
])
def test_vlm_answer_reader_on_hand_written_answers(answer, finds):
    assert vlm_finds_tumour(answer) is finds


def test_type_and_box_helpers():
    assert vlm_type("pituitary tumor", NAMES) == "pituitary" and vlm_type("a glioma or a meningioma", NAMES) is None
    assert vlm_type("no idea", NAMES) is None
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3) and iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


@pytest.fixture
def four_val_images(tmp_path):
    """Two tumour-free and two tumour slices of the shared val split, as a YOLO set of their own."""
    root = tmp_path / "set"
    for name in ("bg_3175", "bg_3219", "c0_1002", "c2_2309"):
        for kind, suffix in (("images", ".jpg"), ("labels", ".txt")):
            source = BRAIN / kind / "val" / f"{name}{suffix}"
            (root / kind / "val").mkdir(parents=True, exist_ok=True)
            (root / kind / "train").mkdir(parents=True, exist_ok=True)
            if source.exists():
                shutil.copyfile(source, root / kind / "val" / source.name)
    (root / "data.yaml").write_text((BRAIN / "data.yaml").read_text())
    return root / "data.yaml"


def test_cli_compares_resumes_and_stores_review_runs(four_val_images, tmp_path, capsys):
    run, db = tmp_path / "run", tmp_path / "review.db"
    args = ["--data", str(four_val_images), "--split", "val", "--output_dir", str(run), "--db", str(db), "--batch_size", "3"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "4 images, 2 with a labelled tumour" in out.out and "kappa" in out.out
    result = json.loads((run / "report.json").read_text())
    assert result["presence"]["detector"]["sensitivity"]["value"] == 100.0  # the committed weights find both
    assert result["detector_box_iou50"]["value"] == 100.0
    assert (run / "plot.png").stat().st_size > 10_000
    rows = (run / "answers.jsonl").read_text().splitlines()
    assert len(rows) == 4 and {json.loads(r)["label"] for r in rows} == {None, "pituitary", "glioma"}
    # Every held-out wording of presence and type is asked, and the report gives each one and the worst.
    wordings = result["wordings"]
    assert list(wordings["presence"]) == [w.text for w in PRESENCE_WORDINGS] and list(wordings["type"]) == [w.text for w in TYPE_WORDINGS]
    for entry in wordings["presence"].values():
        assert entry["sensitivity"]["n"] == 2 and entry["specificity"]["n"] == 2
    worst = wordings["worst_presence"]
    assert worst["balanced"] == min(e["balanced"] for e in wordings["presence"].values())
    assert f"VLM per presence wording ({len(PRESENCE_WORDINGS)}): worst balanced accuracy" in out.out
    assert any(row["measure"].startswith(f"worst of {len(PRESENCE_WORDINGS)} wordings") for row in summary_rows(result))
    answers = json.loads(rows[0])["answers"]
    assert set(answers["p_yes"]) >= {"vlm_presence"} and 0 <= answers["p_yes"]["vlm_presence"] <= 1

    assert main(args) == 0  # resumed: nothing asked again
    assert "4 images, 4 already compared" in capsys.readouterr().err
    assert (run / "answers.jsonl").read_text().splitlines() == rows
    store = Store(db, readonly=True)
    runs = store.query("SELECT id, model, settings FROM runs ORDER BY id")
    assert len(runs) == 3 and all('"kind": "comparison"' in settings for _, _, settings in runs)
    assert store.query("SELECT COUNT(*) FROM predictions")[0][0] == 12  # 4 images x 3 sides, stored once
    stored = store.comparisons()
    assert len(stored) == 2 and stored[0]["report"]["images"] == 4 and stored[0]["plot"].startswith(b"\x89PNG")

    from review import report as review_report

    assert review_report.main(["--db", str(db)]) == 0
    assert "VLM versus detector over a dataset" in capsys.readouterr().out
    # Physicians settle it: their accuracy for each side joins the comparison's row.
    writer = Store(db)
    ada = writer.add_reviewer("ada", "h")
    detector_run, vlm_run = (run_id for run_id, _, settings in runs if '"side": "detector"' in settings or '"side": "vlm"' in settings)
    for (prediction,) in writer.query("SELECT id FROM predictions WHERE run_id = ?", [detector_run]):
        writer.record_verdict(prediction, ada, "correct")
    wrong_once = writer.query("SELECT id FROM predictions WHERE run_id = ? ORDER BY id", [vlm_run])
    for k, (prediction,) in enumerate(wrong_once):
        writer.record_verdict(prediction, ada, "wrong" if k == 0 else "correct")
    (row, _) = review_report.comparison_rows(writer)
    assert (row["detector physicians %"], row["VLM physicians %"], row["VLM+findings physicians %"]) == (100.0, 75.0, None)
    # Each comparison answer carries the detector's boxes for the physician's view: both tumours' at least.
    boxes = [json.loads(b) for (b,) in writer.query("SELECT boxes FROM predictions WHERE run_id = ?", [vlm_run])]
    assert len(boxes) == 4 and sum(bool(found) for found in boxes) >= 2
    assert all(d["label"] in NAMES and len(d["box"]) == 4 for found in boxes for d in found)

    assert main(args + ["--max_new_tokens", "8"]) == 2  # the same folder with other settings
    assert "other settings" in capsys.readouterr().err


def test_reversed_wordings_are_read_the_other_way_round_and_the_per_wording_report():
    assert presence_said("yes", reversed=True) is False and presence_said("no", reversed=True) is True
    assert presence_said("no, there is a glioma", reversed=True) is True  # a named finding is what it says
    normal = next(w.text for w in PRESENCE_WORDINGS if w.reversed)
    cases = [Case("t1", "glioma", wordings={"presence": {"tumour?": True, normal: True}, "type": {"type?": "glioma"}}),
             Case("t2", "glioma", wordings={"presence": {"tumour?": True, normal: False}, "type": {"type?": None}}),
             Case("f1", None, wordings={"presence": {"tumour?": False, normal: False}, "type": {}})]
    result = wording_report(cases)
    assert result["presence"]["tumour?"]["balanced"] == 100.0
    assert result["presence"][normal]["sensitivity"]["value"] == 50.0 and result["presence"][normal]["specificity"]["value"] == 100.0
    assert result["worst_presence"] == {"wording": normal, "balanced": 75.0} and result["mean_presence_balanced"] == 87.5
    assert result["worst_type"]["accuracy"]["value"] == 50.0


def test_other_images_give_the_not_a_brain_mri_count(four_val_images, tmp_path, vqa_rad_image):
    from PIL import Image

    other = tmp_path / "other"
    other.mkdir()
    Image.new("L", (64, 64), 128).save(other / "grey.png")
    shutil.copyfile(vqa_rad_image.parent / "synpic29265.jpg", other / "chest.jpg")
    run = tmp_path / "run"
    args = ["--data", str(four_val_images), "--split", "val", "--output_dir", str(run), "--limit", "1", "--other_images", str(other)]
    assert main(args) == 0
    not_brain = json.loads((run / "report.json").read_text())["not_brain"]
    assert not_brain["images"] == 2 and not_brain["answers"] == 2 * len(NOT_BRAIN_WORDINGS)
    assert set(not_brain["per_wording"]) == {w.text for w in NOT_BRAIN_WORDINGS} and all("brain" in w.text.lower() for w in NOT_BRAIN_WORDINGS)
    assert not_brain["said_tumour"]["n"] == not_brain["answers"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(args[:-1] + [str(empty)]) == 2


def test_missing_data_is_one_line(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none.yaml"), "--output_dir", str(tmp_path / "run")]) == 2
    assert "not a YOLO data.yaml" in capsys.readouterr().err


def test_contested_comparison_answers_come_first_in_every_queue(tmp_path):
    from medvlm.compare import mark_contested
    from review import queue

    store = Store(tmp_path / "q.db")
    plain = store.add_run("m", "vqa-rad", "test")
    for k in range(6):
        store.add_prediction(plain, store.add_item("vqa-rad", f"q{k}", "yes", "CLOSED", image_hash=f"v{k}"), "yes")
    sides = {side: store.add_run(side, "compare:brain", "val", None, {"kind": "comparison", "side": side}) for side in ("detector", "vlm")}
    contested, items = set(), []
    for k, (reference, detector, vlm) in enumerate([("yes", "yes, glioma", "yes"), ("yes", "yes, glioma", "no"),
                                                    ("no", "no", "There is a mass."), ("no", "no", "no")]):
        items.append(store.add_item("compare:brain", "Is there a tumor in this brain MRI?", reference, "CLOSED", image_hash=f"b{k}"))
        ids = [store.add_prediction(sides["detector"], items[-1], detector), store.add_prediction(sides["vlm"], items[-1], vlm)]
        if k in (1, 2):  # the sides disagree (1), the VLM contradicts the label (2)
            contested.update(ids)
    with store.write() as db:
        mark_contested(db, items)
    assert {row[0] for row in store.query("SELECT id FROM predictions WHERE contested = 1")} == contested
    for reviewer in (store.add_reviewer("a", "h"), store.add_reviewer("b", "h")):
        pending = queue.pending(store, reviewer, limit=100)
        assert queue.progress(store, reviewer) == (0, 14) and len(pending) == 14
        assert {p["prediction_id"] for p in pending[:4]} == contested


def test_limit_spreads_over_the_split():
    """The split's files sort by class (bg_, c0_, c1_, c2_): a limit takes even steps, not the first (tumour-free) few."""
    from medvlm.compare import spread
    from medvlm.labels import yolo_images

    _, found = yolo_images(BRAIN / "data.yaml", keys=("val",))
    chosen = spread(found["val"], 8)
    assert len(chosen) == 8 and len({image.name[:3] for image, _ in chosen}) == 4  # every class and the tumour-free
    assert spread([1, 2, 3], 5) == [1, 2, 3] and spread([1, 2, 3], None) == [1, 2, 3]
