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
import os
from pathlib import Path

import yaml

from medvlm import wordings
from medvlm.errors import UserFacingError
from medvlm.wordings import Wording

PREFIX = "labels:"
TRAIN, HELDOUT = "train", "heldout"  # the splits a label source answers to; "val"/"test" mean held-out as well

TUMOR_NAMES = {"pituitary": "pituitary tumor", "meningioma": "meningioma", "glioma": "glioma"}
ORGAN_NAMES = {"HEAD": "head", "CHEST": "chest", "ABD": "abdomen"}
SIDE_NAMES, HEIGHT_NAMES = ("left", "right"), ("upper", "lower")
CENTRE_MARGIN = 0.05  # a box centre this close to the midline has no side: no side/height question about it
SIZE_BOUNDS = ((0.01, "small"), (0.025, "medium"))  # box area as a fraction of the image; about the train tertiles
# Generated blank and near-blank images: a brain-tumour question about them is answered "no". Training and held-out
# blanks are drawn with different seeds (medvlm.labels.blank_image). 48 in training (12 flat greys) left an all-grey
# 256 x 256 upload at "yes, p = 0.52" in the Compare tab.
BLANKS = {TRAIN: 144, HELDOUT: 24}
# Tumour-free training slices are 60 of 810: each is asked every kind of presence question a tumour slice is asked,
# this many times over (in as many wordings, so in several rows: its image is drawn that much more often too).
# Halving presence (half the tumour slices asked it at all, these repeats at 6: runs/tiny-half-presence) found 27 of
# 180 val tumours in "Is any mass present?" and moved tumour type only from 65.0 to 68.3 (worst wording).
TUMOUR_FREE_REPEATS = 12


def is_label_source(source: str) -> bool:
    return source.startswith(PREFIX)


def stable_fraction(*parts: str) -> float:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF


def pick(options, *key: str):
    """One of `options`, fixed by the key's hash: the same key always picks the same one."""
    return options[int(stable_fraction(*key) * len(options)) % len(options)]


def _other(names: list[str], true: str, *key: str) -> str:
    others = [n for n in names if n != true]
    return pick(others, *key, "other")


def record(image: Path, question: str, answer: str, task: str, split: str, answer_type: str = "CLOSED",
           fact: str = "", wording: str = "", reversed: bool = False) -> dict:
    """fact: what the question asks about its image, the same for every wording of it (consistency is scored per
    image and fact); wording: the wording's template (its text before a name is filled in)."""
    out = {"image": str(image), "question": question, "answer": answer, "answer_type": answer_type, "task": task, "split": split}
    if fact:
        out |= {"fact": fact, "wording": wording or question, "reversed": reversed}
    return out


class Asker:
    """Label questions about one image: in training, `count` wordings drawn per fact from the training set (case and
    punctuation varied); held out, every held-out wording of the fact. Yes/no answers flip for reversed wordings."""

    def __init__(self, image: Path, split: str):
        self.image, self.split, self.out = image, split, []
        self.heldout = split == HELDOUT

    def chosen(self, task: str, count: int = 1, reversed: bool | None = None, naming: str | None = None, salt: str = "") -> tuple[Wording, ...]:
        if self.heldout:
            return wordings.wordings(task, wordings.HELDOUT, reversed, naming)
        return self.spread(wordings.wordings(task, wordings.TRAIN, reversed, naming), count, task, salt, str(reversed))

    def spread(self, pool: tuple, count: int, *key: str) -> tuple:
        """count items of the pool, spread over it (not neighbours) from a start drawn per image and key."""
        start = int(stable_fraction(self.image.name, *key) * len(pool))
        step = max(1, len(pool) // max(count, 1) - 1)
        return tuple(pool[(start + k * step) % len(pool)] for k in range(min(count, len(pool))))

    def ask(self, task: str, answer: str, answer_type: str = "CLOSED", name: str = "", fact: str = "",
            among: tuple[Wording, ...] | None = None, **choose) -> None:
        """Ask the fact in the chosen wordings (or in those given as `among`); for a yes/no fact `answer` is the
        answer to its plain (not reversed) wording. name fills {name} in the wording; the fact is task[:name]."""
        for wording in among if among is not None else self.chosen(task, **({"salt": name} | choose)):
            question = wording.text.replace("{name}", name)
            if not self.heldout:
                question = wordings.training_variant(question, stable_fraction(self.image.name, question, "variant"))
            given = {"yes": "no", "no": "yes"}[answer] if wording.reversed else answer
            self.out.append(record(self.image, question, given, task, self.split, answer_type,
                                   fact=fact or (f"{task}:{name}" if name else task), wording=wording.text, reversed=wording.reversed))

    def ask_name_pair(self, task: str, true: str, false: str) -> None:
        """A named yes/no fact asked as a minimal pair: one wording (every held-out one) with the true name, "yes", and
        with a false name, "no". Drawn separately, the two names came in different wordings, and the presence
        questions (any finding noun, the same answer) taught that the noun does not matter: as they grew, type yes/no
        fell from 86 to 57 and body region yes/no from 99 to 71 (runs/tiny-both-forms, runs/tiny-balanced)."""
        among = self.chosen(task, salt="name pair")
        self.ask(task, "yes", name=true, among=among)
        self.ask(task, "no", name=false, among=among)


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
    for number, r in enumerate(records):  # pairs each question with its swapped-image answer
        r["id"] = f"{path.name}:{number}"
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
        for number in range(BLANKS[split]):
            records += not_brain_questions(blank_image(split, number), split, any_wording=True)
    return records


def blank_image(split: str, number: int) -> Path:
    """A generated blank or near-blank image (flat grey levels, noise, gradients, an empty disc), written once to
    the cache; training and held-out blanks never share a level or a seed."""
    import numpy as np
    from PIL import Image

    from medvlm.settings import cache_dir

    path = cache_dir() / "blanks" / f"{split}-{number}.png"
    if path.is_file():
        return path
    rng = np.random.default_rng([number, 0 if split == TRAIN else 1])
    level = rng.uniform(0, 255)
    y, x = np.mgrid[0:256, 0:256] / 255.0
    kind = number % 4
    if kind == 0:
        pixels = np.full((256, 256), level)
    elif kind == 1:
        pixels = level + rng.normal(0, rng.uniform(2, 40), (256, 256))
    elif kind == 2:
        pixels = level * (x if number % 8 < 4 else y) + rng.uniform(0, 60)
    else:
        disc = (x - 0.5) ** 2 + (y - 0.5) ** 2 < rng.uniform(0.08, 0.2)
        pixels = np.where(disc, level, rng.uniform(0, 30))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.png")  # then renamed: a reader never sees half a file
    Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).convert("RGB").save(partial)
    os.replace(partial, path)
    return path


def not_brain_questions(image: Path, split: str, any_wording: bool = False) -> list[dict]:
    """Brain-tumour questions about an image that is no brain MRI (a chest film, an abdominal CT, a skin photo, a
    blank): the answer is "no". Other images are asked the wordings that name the brain ("is there a brain tumour?"),
    since "is there a mass?" may well be true of a chest film; a blank is asked a plain wording of any kind."""
    asker = Asker(image, split)
    # A blank is asked one wording: three each (432 questions over 144 blanks) made plain wordings that do not name
    # the brain 65 % "no" in training, and runs/tiny-any-wording answered "no" to every slice asked "Does the scan
    # show any lesion at all?" (bench/fresh_wordings.py).
    asker.ask("tumor_presence", "no", fact="tumor_presence", reversed=False, naming=None if any_wording else "brain",
              count=1 if any_wording else 2)
    for r in asker.out:
        r["task"] = "tumor_presence_not_brain"
    return asker.out


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


def ask_presence(asker: Asker, answer: str, count: int, any_polarities: tuple[tuple[bool, int], ...]) -> None:
    """A training slice's presence questions: `count` wordings naming the brain, `count` reversed, `count` minimal
    pairs of the image's state (wordings.STATE_PAIRS: "abnormal?" and "normal?", both asked), and wordings of any kind
    in each (reversed, how many) of any_polarities."""
    asker.ask("tumor_presence", answer, reversed=False, naming="brain", count=count)
    asker.ask("tumor_presence", answer, reversed=True, count=count)
    pairs = asker.spread(wordings.STATE_PAIRS, count, "tumor_presence", "state pairs")
    asker.ask("tumor_presence", answer, among=tuple(wording for pair in pairs for wording in pair))
    for reversed_, many in any_polarities:
        asker.ask("tumor_presence", answer, reversed=reversed_, salt="any", count=many)


def tumor_questions(image: Path, boxes: list, names: list[str], split: str) -> list[dict]:
    """Questions about one slice, in training wordings (a few per fact, drawn per image) or in every held-out wording.
    More than one box (not in the shared set) keeps presence only: type, side and size would need to say which
    tumour. Tumour-free slices are few (60 of 810 in train): they are asked many more presence questions
    (TUMOUR_FREE_REPEATS), so that neither the answer word, the wording's polarity nor the kind of wording predicts
    whether there is a tumour."""
    key, asker = image.name, Asker(image, split)
    kinds = [TUMOR_NAMES.get(n, n) for n in names]
    modalities = list(wordings.MODALITY_NAMES.values())
    if not boxes:
        if asker.heldout:
            asker.ask("tumor_presence", "no")
        else:  # The tumour slices' presence questions, each asked TUMOUR_FREE_REPEATS times: per kind of wording
            # about as many tumour-free answers as tumour ones. At 4 plain and 3 reversed, 84 % of brain presence
            # questions were about a tumour, and runs/tiny-both-forms said "tumour" of most tumour-free val slices.
            ask_presence(asker, "no", TUMOUR_FREE_REPEATS, any_polarities=((False, TUMOUR_FREE_REPEATS // 2), (True, TUMOUR_FREE_REPEATS // 2)))
        asker.ask("tumor_type_yes_no", "no", name=_other(kinds, "", key))
        if asker.heldout:
            asker.ask("modality_yes_no", "yes", name=modalities[0])
        return asker.out
    if asker.heldout:
        asker.ask("tumor_presence", "yes")
    else:  # Per tumour slice one wording naming the brain (other images are asked only those, answered "no": alone,
        # they taught "brain tumour" -> "no"), one reversed, and one of any wording in either polarity (asked of only
        # half the slices, runs/tiny-typed said "no" to 62 of 180 tumours in one such wording). Yes stays < 60 %.
        ask_presence(asker, "yes", 1, any_polarities=((stable_fraction(key, "any wording") < 0.5, 1),))
    if len(boxes) > 1:
        return asker.out
    cls, xc, yc, w, h = boxes[0]  # a class within names: yolo_images checked it
    kind = kinds[cls]
    # Two wordings of the type per slice in training: with three presence questions per tumour slice, one type
    # question lost its share of each step (runs/tiny-consistent: type worst wording 81.7 -> 53.9).
    asker.ask("tumor_type", kind, count=2)
    asker.ask_name_pair("tumor_type_yes_no", kind, _other(kinds, kind, key))
    for task, centre, sides in (("tumor_side", xc, SIDE_NAMES), ("tumor_height", yc, HEIGHT_NAMES)):
        if abs(centre - 0.5) <= CENTRE_MARGIN:
            continue
        true = sides[0] if centre < 0.5 else sides[1]
        # Both forms of each off-centre slice: one of them per slice (a coin flip) left side and height 6 % of the
        # brain questions, and runs/tiny-any-wording-2ep read them off the image by only 4 to 7 points.
        asker.ask(task, true)
        # ProbMed-style: the true side and the wrong one (held out both, in training one of them)
        asked = true if asker.heldout or stable_fraction(key, task, "yes") < 0.5 else _other(list(sides), true, key)
        asker.ask(f"{task}_yes_no", "yes" if asked == true else "no", name=asked)
        if asker.heldout:
            asker.ask(f"{task}_yes_no", "no", name=_other(list(sides), true, key))
    size = next((name for bound, name in SIZE_BOUNDS if w * h < bound), "large")
    asker.ask("tumor_size", size)
    # ProbMed-style: the right modality or a wrong one (all of the set is MRI)
    if asker.heldout:
        asker.ask("modality_yes_no", "yes", name=modalities[0])
        asker.ask("modality_yes_no", "no", name=_other(modalities, modalities[0], key))
    else:
        asked = modalities[0] if stable_fraction(key, "modality") < 0.5 else _other(modalities, modalities[0], key)
        asker.ask("modality_yes_no", "yes" if asked == modalities[0] else "no", name=asked)
    return asker.out


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
        asker, name = Asker(image, split), ORGAN_NAMES[organ[image]]
        asker.ask("organ", name)
        asker.ask_name_pair("organ_yes_no", name, _other(names, name, image.name))
        records += asker.out
        if organ[image] != "HEAD":  # a head image may show a brain tumour: VQA-RAD does not say
            records += not_brain_questions(image, split)
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
        asker = Asker(image, split)
        asker.ask("lesion_diagnosis", name, "OPEN")
        asker.ask_name_pair("lesion_yes_no", name, _other(names, name, image.name))
        records += asker.out + not_brain_questions(image, split)
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
