"""Detection: offline YOLO training and validation, the committed brain-tumour weights on shared val images, boxes
in original pixels for any input format, drawing, and the VLM-versus-detector agreement logic."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from medvlm.compare import agreement, grounded_question, vlm_finds_tumour
from medvlm.detect import Detection, Detector, draw
from medvlm.errors import UserFacingError
from medvlm.models.families import FAMILIES
from medvlm.settings import DETECTOR_WEIGHTS

BRAIN = SHARED_DATA / "brain-tumor"
# Val images (one or more per class) whose labelled tumour the committed weights must find.
FOUND_IMAGES = ("c0_1002", "c0_1173", "c1_170", "c1_189", "c2_2309", "c2_1931")


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def labelled_box(name: str, size: tuple[int, int]):
    cls, xc, yc, w, h = (BRAIN / "labels" / "val" / f"{name}.txt").read_text().split()[:5]
    W, H = size
    xc, yc, w, h = float(xc) * W, float(yc) * H, float(w) * W, float(h) * H
    return int(cls), (xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2)


@pytest.fixture(scope="module")
def detector():
    return Detector(DETECTOR_WEIGHTS)


@pytest.fixture
def no_outbound_connections():
    """Records every socket connect in this process to a non-loopback address (a Python audit hook)."""
    attempts = []
    active = [True]

    def hook(event, args):
        if active[0] and event == "socket.connect":
            address = args[1]
            host = address[0] if isinstance(address, tuple) else str(address)
            if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
                attempts.append(host)

    sys.addaudithook(hook)
    yield attempts
    active[0] = False  # audit hooks cannot be removed, only silenced


# --- training and validation, offline --------------------------------------------------------------------------------


def small_brain_dataset(root: Path, per_kind: int = 8) -> Path:
    """The shared set's first `per_kind` train and val images of each class and of the tumour-free ones, with their
    labels, as a YOLO folder of its own: one epoch and its validations in seconds, not minutes."""
    import shutil

    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for kind in ("c0_", "c1_", "c2_", "bg_"):
            for image in sorted((BRAIN / "images" / split).glob(f"{kind}*"))[:per_kind]:
                shutil.copy(image, root / "images" / split)
                label = BRAIN / "labels" / split / f"{image.stem}.txt"
                if label.is_file():
                    shutil.copy(label, root / "labels" / split)
    shutil.copy(BRAIN / "data.yaml", root / "data.yaml")
    return root / "data.yaml"


def test_one_epoch_trains_offline_and_writes_weights(tmp_path, no_outbound_connections, capsys):
    from train.yolo import main

    run, data = tmp_path / "run", small_brain_dataset(tmp_path / "brain")
    code = main(["--data", str(data), "--epochs", "1", "--imgsz", "160", "--batch", "8", "--workers", "0", "--output_dir", str(run)])
    assert code == 0
    assert (run / "best.pt").stat().st_size > 1e6
    result = json.loads((run / "results.json").read_text())
    assert [row["class"] for row in result["classes"]][-1] == "all"
    assert (run / "val" / "confusion_matrix.png").is_file()
    assert not list((tmp_path / "brain").rglob("*.cache"))  # caches went to the run's copy, not the data given
    assert list((run / "dataset").rglob("*.cache"))
    assert "mAP50" in capsys.readouterr().out
    assert no_outbound_connections == []


def test_val_reports_every_class_of_the_committed_weights(tmp_path, capsys):
    from train.yolo import main

    assert main(["--val", "--weights", str(DETECTOR_WEIGHTS), "--data", str(BRAIN / "data.yaml"),
                 "--workers", "0", "--output_dir", str(tmp_path)]) == 0
    rows = {row["class"]: row for row in json.loads((tmp_path / "results.json").read_text())["classes"]}
    assert set(rows) == {"pituitary", "meningioma", "glioma", "all"}
    assert rows["all"]["mAP50"] >= 0.80  # 0.809 when committed: the target on this split
    assert "glioma" in capsys.readouterr().out


def test_missing_dataset_and_weights_are_one_line_errors(tmp_path, capsys):
    from train.yolo import main

    assert main(["--data", str(tmp_path / "none.yaml"), "--output_dir", str(tmp_path / "a")]) == 2
    assert main(["--val", "--weights", str(tmp_path / "no.pt"), "--data", str(BRAIN / "data.yaml"), "--output_dir", str(tmp_path / "b")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "none.yaml" in errors[0] and "no.pt" in errors[1]


# --- the detection layer ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FOUND_IMAGES)
def test_committed_weights_find_the_labelled_tumour(detector, name):
    image = Image.open(BRAIN / "images" / "val" / f"{name}.jpg")
    cls, truth = labelled_box(name, image.size)
    detections = detector.predict(image)
    assert detections, "no detection"
    assert max(iou(d.box, truth) for d in detections) >= 0.5


def test_boxes_are_in_the_original_image_pixels(detector):
    image = Image.open(BRAIN / "images" / "val" / f"{FOUND_IMAGES[0]}.jpg").convert("L")
    small, large = detector.predict(image)[0], detector.predict(image.resize((image.width * 2, image.height * 3)))[0]
    scale = np.array([2, 3, 2, 3])
    assert np.allclose(np.array(large.box) / scale, small.box, atol=0.04 * image.width)


def test_any_input_format_gives_the_same_finding(detector, tmp_path):
    from medvlm.images import load_image

    gray = Image.open(BRAIN / "images" / "val" / f"{FOUND_IMAGES[2]}.jpg").convert("L")
    as16 = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).convert("I;16")
    rgba = gray.convert("RGBA")
    png16 = tmp_path / "mri16.png"
    as16.save(png16)
    reference = detector.predict(gray)[0]
    for variant in (as16, rgba, load_image(png16)):
        found = detector.predict(variant)
        assert found and iou(found[0].box, reference.box) > 0.9 and found[0].label == reference.label


def test_drawing_on_grayscale(detector):
    gray = Image.open(BRAIN / "images" / "val" / f"{FOUND_IMAGES[1]}.jpg").convert("L")
    detections = detector.predict(gray)
    drawn = draw(gray, detections)
    assert drawn.mode == "RGB" and drawn.size == gray.size
    x1, y1 = (round(v) for v in detections[0].box[:2])
    r, g, b = drawn.getpixel((x1 + 1, y1 + 20))
    assert not (r == g == b)  # the box edge is coloured; the scan is gray
    assert draw(gray, []).convert("L").tobytes() == gray.tobytes()


def test_missing_or_broken_weights_are_clear(tmp_path):
    with pytest.raises(UserFacingError, match="not found"):
        Detector(tmp_path / "none.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(UserFacingError, match="broken.pt"):
        Detector(broken)


# --- VLM versus detector -----------------------------------------------------------------------------------------------

BOX = Detection("glioma", 0.87, (100.0, 120.0, 180.0, 200.0))


@pytest.mark.parametrize("answer, finds", [
    ("Yes", True), ("yes, in the left frontal lobe", True), ("No", False), ("There is a mass in the sella.", True),
    ("No mass is seen.", False), ("The brain is normal.", False), ("glioma", True), ("axial T1", None), ("", None),
    ("yes and no", None),
])
def test_vlm_answer_reading(answer, finds):
    assert vlm_finds_tumour(answer) is finds


@pytest.mark.parametrize("detections, answer, line", [
    ([BOX], "Yes", "Both find a tumour."),
    ([], "no", "Neither finds a tumour."),
    ([BOX], "No", "Only the detector finds a tumour."),
    ([], "There is a large tumour.", "Only the VLM finds a tumour."),
    ([BOX], "axial", "does not say"),
])
def test_agreement(detections, answer, line):
    assert line in agreement(detections, answer)


def test_findings_go_into_the_prompt_as_text():
    family = FAMILIES["fast_vlm"]
    text = grounded_question(family, "Is there a tumour?", [BOX], (512, 512))
    assert text.endswith("\nIs there a tumour?") and "glioma (confidence 0.87) at x 100-180, y 120-200" in text
    assert "no tumour" in family.findings([], (512, 512))


def test_bad_uploads_keep_their_one_line_errors_once_the_detector_is_loaded(detector, tmp_path):
    """Importing ultralytics replaces PIL.Image.open with a wrapper that hunts for a HEIF plugin on unknown files."""
    from medvlm.images import load_image

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UserFacingError, match="not a PNG, JPEG or DICOM image"):
        load_image(text)


def test_one_folder_for_train_and_val_is_copied_once(tmp_path):
    """A quick check names the same folder twice; it used to die with FileExistsError while copying."""
    import yaml

    from train.yolo import copy_dataset

    spec = yaml.safe_load((BRAIN / "data.yaml").read_text())
    spec.update(path=str(BRAIN), train="images/val", val="images/val")
    data = tmp_path / "same.yaml"
    data.write_text(yaml.safe_dump(spec))
    local = yaml.safe_load(copy_dataset(data, tmp_path / "run").read_text())
    copied = Path(local["path"])
    assert len(list((copied / "images" / "val").iterdir())) == len(list((BRAIN / "images" / "val").iterdir()))
    assert (copied / "labels" / "val").is_dir() and not (copied / "images" / "train").exists()
