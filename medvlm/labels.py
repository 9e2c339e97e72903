"""Questions built from image labels: facts that only the image can answer, to train and to measure grounding.

A label source is named `labels:PATH` wherever a data source is taken (train.vlm's --data mixture, medvlm.evaluate):
- a YOLO `data.yaml` of brain MRI (../shared/data/brain-tumor): is there a tumour, which type, which half of the
  image (from the box centre), how large (box area); images with an empty label file are tumour-free;
- VQA-RAD's JSONL (its `image_organ`): which region, and yes/no per region;
- ISIC/HAM10000 metadata (its `dx`): which diagnosis, and yes/no per diagnosis.

Everything is deterministic (choices come from hashes of the image's name, never a random generator) and split-safe:
each image's questions come from its own labels only, and a held-out image never trains. VQA-RAD's standard split
asks train and test questions about the same images, so its label questions train only on images no test question
uses, and its held-out label questions are asked about the test questions' images. ISIC is split by lesion, as
train.conversations does. Training questions vary their phrasing per image; held-out ones use one fixed phrasing per
task, so scores of different runs compare. Yes/no questions are balanced: each true fact is paired with a false one.
"""
import hashlib
import json
from pathlib import Path

import yaml

from medvlm.errors import UserFacingError

PREFIX = "labels:"
TRAIN, HELDOUT = "train", "heldout"  # the splits a label source answers to; "val"/"test" mean held-out as well

PRESENCE = ("Is there a tumor in this brain MRI?", "Does this MRI show a brain tumor?", "Is a tumor visible in this scan?",
            "Can you see a tumor in this image?")
TYPE = ("What type of tumor is this: pituitary, meningioma or glioma?", "Which kind of brain tumor does this MRI show?",
        "What is the tumor type?")
TYPE_YES_NO = ("Is there a {name} in this image?", "Does this MRI show a {name}?")
SIDE = ("Is the tumor in the left or the right half of the image?", "On which side of the image is the tumor, left or right?")
HEIGHT = ("Is the tumor in the upper or the lower half of the image?", "Is the tumor in the top or the bottom half of the image?")
SIZE = ("How large is the tumor: small, medium or large?", "What is the size of the tumor: small, medium or large?")
ORGAN = ("Which part of the body does this image show: head, chest or abdomen?", "What body region is imaged here?",
         "Which region is this scan of?")
ORGAN_YES_NO = ("Does this image show the {name}?", "Is this an image of the {name}?")
DIAGNOSIS = ("What is the most likely diagnosis for this skin lesion?", "What does this dermoscopic image show?")
DIAGNOSIS_YES_NO = ("Is this lesion {name}?", "Does this dermoscopic image show {name}?")

TUMOR_NAMES = {"pituitary": "pituitary tumor", "meningioma": "meningioma", "glioma": "glioma"}
ORGAN_NAMES = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}
CENTRE_MARGIN = 0.05  # a box centre this close to the midline has no side: no side/height question about it
SIZE_BOUNDS = ((0.01, "small"), (0.025, "medium"))  # box area as a fraction of the image; about the train tertiles
NEGATIVE_PRESENCE_SHARE = 0.3  # tumour images asked "is there a tumour?" in training: balances the few tumour-free ones


def is_label_source(source: str) -> bool:
    return source.startswith(PREFIX)


def stable_fraction(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF


def _pick(options, heldout: bool, *key: str) -> str:
    return options[0] if heldout else options[int(stable_fraction(*key) * len(options)) % len(options)]


def _other(names: list[str], true: str, *key: str) -> str:
    others = [n for n in names if n != true]
    return others[int(stable_fraction(*key, "other") * len(others)) % len(others)]


def record(image: Path, question: str, answer: str, task: str, split: str, answer_type: str = "CLOSED") -> dict:
    return {"image": str(image), "question": question, "answer": answer, "answer_type": answer_type, "task": task, "split": split}


def load_records(source: str, split: str | None) -> list[dict]:
    """VQA records (image, question, answer, answer_type, task, split) of a `labels:PATH` source; split is "train",
    "heldout" ("val"/"test" too) or None for both."""
    path = Path(source[len(PREFIX):] if is_label_source(source) else source).expanduser()
    if not path.is_file():
        raise UserFacingError(f"No label file at {path} (a YOLO data.yaml, VQA-RAD JSONL or ISIC metadata JSONL).")
    wanted = None if split is None else (TRAIN if split == TRAIN else HELDOUT)
    if path.suffix in (".yaml", ".yml"):
        records = brain_tumor_records(path)
    else:
        first = _first_record(path)
        if "image_organ" in first:
            records = organ_records(path)
        elif "dx" in first:
            records = diagnosis_records(path)
        else:
            raise UserFacingError(f"{path}: no labels medvlm knows (image_organ for VQA-RAD, dx for ISIC).")
    return [r for r in records if wanted is None or r["split"] == wanted]


def _first_record(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                    return record
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise UserFacingError(f"{path}: the first record is not valid JSON ({type(e).__name__}).") from None
    raise UserFacingError(f"{path} holds no records.")


# --- brain-tumour MRI, YOLO layout -----------------------------------------------------------------------------------


def yolo_images(data_yaml: Path, keys=("train", "val")) -> tuple[list[str], dict[str, list[tuple[Path, list]]]]:
    """A YOLO data.yaml -> (class names, {key: [(image, boxes)]}) for its train/val folders; boxes are
    (class, x_centre, y_centre, width, height) normalised, none for a tumour-free image (an empty or absent label)."""
    try:
        config = yaml.safe_load(data_yaml.read_text())
        names = config["names"]
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        raise UserFacingError(f"{data_yaml} is not a YOLO data.yaml with names ({type(e).__name__}).") from None
    root = (data_yaml.parent / str(config.get("path") or ".")).resolve()
    found, folders = {}, []
    for key in keys:
        folder = (root / str(config.get(key, f"images/{key}"))).resolve()
        if not folder.is_dir():
            raise UserFacingError(f"{data_yaml}: no image folder {folder.name} for {key}.")
        if folder in folders:  # one folder as both: every held-out question would be about a training image
            raise UserFacingError(f"{data_yaml}: train and val name the same folder; label questions need a held-out split.")
        folders.append(folder)
        found[key] = []
        for image in sorted(folder.iterdir()):
            if image.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            label = Path(str(image.parent).replace("/images/", "/labels/").replace("/images", "/labels")) / (image.stem + ".txt")
            boxes = _yolo_boxes(label)
            for box in boxes:
                if not 0 <= box[0] < len(names):
                    raise UserFacingError(f"{image.name}: class {box[0]} is not in data.yaml's {len(names)} names.")
            found[key].append((image, boxes))
    return names, found


def brain_tumor_records(data_yaml: Path) -> list[dict]:
    names, found = yolo_images(data_yaml)
    records = []
    for key, split in (("train", TRAIN), ("val", HELDOUT)):
        for image, boxes in found[key]:
            records += tumor_questions(image, boxes, names, split)
    return records


def _yolo_boxes(label: Path) -> list[tuple[int, float, float, float, float]]:
    if not label.is_file():
        return []
    boxes = []
    for number, line in enumerate(label.read_text(errors="replace").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 5:
                raise ValueError
            boxes.append((int(parts[0]), *map(float, parts[1:])))
        except ValueError:
            raise UserFacingError(f"{label} line {number}: not a YOLO box (class x_centre y_centre width height).") from None
    return boxes


def tumor_questions(image: Path, boxes: list, names: list[str], split: str) -> list[dict]:
    """Questions about one slice. More than one box (not in the shared set) keeps presence only: type, side and size
    would need to say which tumour."""
    heldout, key = split == HELDOUT, image.name
    out = []
    ask = lambda question, answer, task, answer_type="CLOSED": out.append(record(image, question, answer, task, split, answer_type))  # noqa: E731
    kinds = [TUMOR_NAMES.get(n, n) for n in names]
    if not boxes:
        # Tumour-free slices are few (60 of 810 in train): every presence phrasing, to balance the yes answers.
        for question in (PRESENCE[:1] if heldout else PRESENCE):
            ask(question, "no", "tumor_presence")
        ask(_pick(TYPE_YES_NO, heldout, key, "type").format(name=_other(kinds, "", key)), "no", "tumor_type_yes_no")
        return out
    if heldout or stable_fraction(key, "presence") < NEGATIVE_PRESENCE_SHARE:
        ask(_pick(PRESENCE, heldout, key, "presence"), "yes", "tumor_presence")
    if len(boxes) > 1:
        return out
    cls, xc, yc, w, h = boxes[0]  # a class within names: yolo_images checked it
    kind = kinds[cls]
    ask(_pick(TYPE, heldout, key, "type"), kind, "tumor_type")
    phrasing = _pick(TYPE_YES_NO, heldout, key, "type")
    ask(phrasing.format(name=kind), "yes", "tumor_type_yes_no")
    ask(phrasing.format(name=_other(kinds, kind, key)), "no", "tumor_type_yes_no")
    if abs(xc - 0.5) > CENTRE_MARGIN:
        ask(_pick(SIDE, heldout, key, "side"), "left" if xc < 0.5 else "right", "tumor_side")
    if abs(yc - 0.5) > CENTRE_MARGIN:
        ask(_pick(HEIGHT, heldout, key, "height"), "upper" if yc < 0.5 else "lower", "tumor_height")
    size = next((name for bound, name in SIZE_BOUNDS if w * h < bound), "large")
    ask(_pick(SIZE, heldout, key, "size"), size, "tumor_size")
    return out


# --- VQA-RAD organ ---------------------------------------------------------------------------------------------------


def organ_records(jsonl: Path) -> list[dict]:
    organ, test_images = {}, set()
    for row in _jsonl(jsonl):
        image = (jsonl.parent / row["image"]).resolve()
        if row.get("image_organ"):
            organ[image] = row["image_organ"]
        if row.get("split") == "test":
            test_images.add(image)
    names = list(ORGAN_NAMES.values())
    records = []
    for image in sorted(organ):
        if organ[image] not in ORGAN_NAMES:
            continue
        split = HELDOUT if image in test_images else TRAIN
        heldout, key, name = split == HELDOUT, image.name, ORGAN_NAMES[organ[image]]
        records.append(record(image, _pick(ORGAN, heldout, key, "organ"), name, "organ", split))
        phrasing = _pick(ORGAN_YES_NO, heldout, key, "organ")
        records.append(record(image, phrasing.format(name=name), "yes", "organ_yes_no", split))
        records.append(record(image, phrasing.format(name=_other(names, name, key)), "no", "organ_yes_no", split))
    return records


# --- ISIC / HAM10000 diagnosis ---------------------------------------------------------------------------------------

HELDOUT_LESIONS = 0.2  # share of lesions held out, as train.conversations splits them


def diagnosis_records(jsonl: Path) -> list[dict]:
    rows = list(_jsonl(jsonl))
    names = sorted({row["dx_name"] for row in rows if row.get("dx_name")})
    records = []
    for row in rows:
        name = row.get("dx_name")
        if not name:
            continue
        image = (jsonl.parent / row["image"]).resolve()
        group = str(row.get("lesion_id") or row.get("image_id") or row["image"])
        split = HELDOUT if stable_fraction(group) < HELDOUT_LESIONS else TRAIN
        heldout, key = split == HELDOUT, image.name
        records.append(record(image, _pick(DIAGNOSIS, heldout, key, "dx"), name, "lesion_diagnosis", split, "OPEN"))
        phrasing = _pick(DIAGNOSIS_YES_NO, heldout, key, "dx")
        records.append(record(image, phrasing.format(name=name), "yes", "lesion_yes_no", split))
        records.append(record(image, phrasing.format(name=_other(names, name, key)), "no", "lesion_yes_no", split))
    return records


def _jsonl(path: Path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserFacingError(f"{path} line {number}: not valid JSON ({e.msg}).") from None
                if not isinstance(record, dict) or not isinstance(record.get("image"), str):
                    raise UserFacingError(f"{path} line {number}: a record needs an image path.")
                yield record
