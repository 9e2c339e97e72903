"""Training and evaluation data: VQA triplets and multi-turn conversations, each about one image.

Sources (`load_examples`):
- a local JSONL of VQA records: {"image", "question", "answer", "answer_type", "split"} (+ optional metadata such as
  "id"), image paths relative to the file, as in ../shared/data/vqa-rad/vqa_rad.jsonl;
- a local JSONL of conversations: {"image", "messages": [{"role": "user"|"assistant", "content"}, ...], "split"};
- a local image folder holding a metadata.jsonl of either kind (Hugging Face imagefolder layout, "file_name" or "image");
- a hub dataset id with image/question/answer columns (flaviagiammarino/path-vqa, flaviagiammarino/vqa-rad);
- `labels:PATH`: questions built from image labels (medvlm.labels), e.g. labels:../shared/data/brain-tumor/data.yaml.
A mixture (`parse_mixture`) names several sources with weights: "a.jsonl,labels:data.yaml@2".
Every record is checked before training starts: a missing or unreadable image, an empty answer or an unknown field
is reported with its line number; skip_bad=True skips and counts them instead.
"""
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from medvlm import labels
from medvlm.errors import UserFacingError
from medvlm.images import load_image

VQA_FIELDS = {"image", "question", "answer"}
CONVERSATION_FIELDS = {"image", "messages"}
OPTIONAL_FIELDS = {"answer_type", "split", "id", "question_type", "image_organ", "phrase_type", "file_name", "source", "task",
                   "fact", "wording", "reversed"}
METADATA_FILE = "metadata.jsonl"


@dataclass(frozen=True)
class Example:
    """One image and its (question, answer) turns; a VQA triplet is a one-turn example."""

    image_path: str | None  # a local file, or None when the image came inline from a hub dataset
    turns: tuple[tuple[str, str], ...]
    answer_type: str = "OPEN"  # CLOSED (yes/no and other closed sets) or OPEN; of the last turn
    split: str = "train"
    id: str = ""
    inline_image: Image.Image | None = None
    task: str = ""  # what a label question asks (medvlm.labels: "tumor_presence", "organ", ...); "" for plain VQA
    fact: str = ""  # label questions: the fact asked, the same for each of its wordings (medvlm.wordings)
    wording: str = ""  # label questions: the wording's template
    reversed: bool = False  # the wording asks the fact the other way round ("normal?"): its yes/no answer is flipped

    def image(self) -> Image.Image:
        return self.inline_image if self.inline_image is not None else load_image(self.image_path)

    @property
    def image_key(self):
        """Where the image comes from (its file, or its inline object), to find the examples that share it without
        decoding; its content's identity is medvlm.images.fingerprint."""
        return self.image_path if self.inline_image is None else id(self.inline_image)

    @property
    def question(self) -> str:
        return self.turns[-1][0]

    @property
    def answer(self) -> str:
        return self.turns[-1][1]


@dataclass
class LoadReport:
    examples: list[Example]
    skipped: list[str]  # "line N: why", one per skipped record


@dataclass(frozen=True)
class MixturePart:
    source: str
    weight: float = 1.0  # rows drawn per epoch, as a multiple of the source's own rows (0.5: half of them)


def parse_mixture(text: str) -> list[MixturePart]:
    """ "SOURCE[@WEIGHT],SOURCE[@WEIGHT],..." -> parts. The first source is the main one (its held-out split is
    the evaluation's headline score)."""
    parts = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        source, at, weight = entry.rpartition("@") if "@" in entry else (entry, "", "1")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not source or not value > 0 or value > 1000:
            raise UserFacingError(f"Bad data entry {entry!r}: write SOURCE or SOURCE@WEIGHT with a weight in (0, 1000].")
        parts.append(MixturePart(source, value))
    if not parts:
        raise UserFacingError("No data source given.")
    return parts


def load_examples(source: str, split: str | None = None, skip_bad: bool = False, limit: int | None = None) -> LoadReport:
    path = Path(source).expanduser()
    if labels.is_label_source(source):
        records = labels.load_records(source, split)
        readable: dict[Path, str | None] = {}
        report = LoadReport([], [])
        for number, record in enumerate(records, start=1):
            try:
                report.examples.append(_example(record, Path("/"), readable))
            except ValueError as e:
                report.skipped.append(f"question {number}: {e}")
        if report.skipped and not skip_bad:
            raise UserFacingError(f"{len(report.skipped)} bad label question(s) from {source}: {report.skipped[0]}.")
    elif path.is_dir():
        metadata = path / METADATA_FILE
        if not metadata.is_file():
            raise UserFacingError(f"{source} is a folder without {METADATA_FILE} (one JSON record per image).")
        report = _load_jsonl(metadata, split, skip_bad)
    elif path.is_file():
        report = _load_jsonl(path, split, skip_bad)
    elif path.suffix in (".jsonl", ".json") or source.startswith((".", "/", "~")):
        raise UserFacingError(f"No data file at {source}.")
    else:
        report = _load_hub(source, split)
    if limit is not None:
        report.examples = report.examples[:limit]
    if not report.examples:
        raise UserFacingError(f"No records in {source}" + (f" for split {split!r}." if split else "."))
    return report


def _load_jsonl(path: Path, split: str | None, skip_bad: bool) -> LoadReport:
    examples, problems = [], []
    readable: dict[Path, str | None] = {}  # image -> why it is unusable (None = fine); each image checked once
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                example = _parse_record(line, path.parent, readable)
            except ValueError as e:
                problems.append(f"line {number}: {e}")
                continue
            if split is None or example.split == split:
                examples.append(example)
    if problems and not skip_bad:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise UserFacingError(f"{len(problems)} bad record(s) in {path}: {shown}. Fix them, or pass --skip-bad to skip them.")
    return LoadReport(examples, problems)


def _parse_record(line: str, folder: Path, readable: dict) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg})") from None
    return _example(record, folder, readable)


def _example(record, folder: Path, readable: dict) -> Example:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if "file_name" in record and "image" not in record:
        record["image"] = record["file_name"]
    kind = CONVERSATION_FIELDS if "messages" in record else VQA_FIELDS
    missing = sorted(kind - record.keys())
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(record.keys() - kind - OPTIONAL_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    image_path = (folder / str(record["image"])).resolve()
    if image_path not in readable:
        try:
            load_image(image_path)
            readable[image_path] = None
        except UserFacingError as e:
            readable[image_path] = str(e)
    if readable[image_path]:
        raise ValueError(f"image {record['image']}: {readable[image_path]}")
    turns = _conversation_turns(record["messages"]) if kind is CONVERSATION_FIELDS else ((_text(record, "question"), _text(record, "answer")),)
    answer_type = str(record.get("answer_type") or ("CLOSED" if turns[-1][1].lower() in ("yes", "no") else "OPEN")).upper()
    return Example(str(image_path), turns, answer_type, str(record.get("split", "train")), str(record.get("id", "")),
                   task=str(record.get("task", "")), fact=str(record.get("fact", "")), wording=str(record.get("wording", "")),
                   reversed=record.get("reversed") is True)


def _text(record: dict, field: str) -> str:
    value = record.get(field)
    if not isinstance(value, (str, int, float)) or not str(value).strip():
        raise ValueError(f"empty {field}")
    return str(value).strip()


def _conversation_turns(messages) -> tuple:
    if not isinstance(messages, list) or len(messages) < 2 or len(messages) % 2:
        raise ValueError("messages must alternate user/assistant, starting with user and ending with assistant")
    turns = []
    for user, assistant in zip(messages[::2], messages[1::2]):
        if not isinstance(user, dict) or not isinstance(assistant, dict) or user.get("role") != "user" or assistant.get("role") != "assistant":
            raise ValueError("messages must alternate user/assistant, starting with user")
        turns.append((_text(user, "content"), _text(assistant, "content")))
    return tuple(turns)


def _load_hub(dataset_id: str, split: str | None) -> LoadReport:
    """A hub VQA dataset (image, question, answer columns), e.g. flaviagiammarino/path-vqa."""
    try:
        from datasets import load_dataset

        rows = load_dataset(dataset_id, split=split or "train")
    except Exception as e:  # offline, unknown id, missing split: datasets raises many types
        raise UserFacingError(
            f"Could not load dataset {dataset_id!r} ({type(e).__name__}): without the hub, pass a local JSONL "
            "or set HF_DATASETS_OFFLINE=0 and HF_HUB_OFFLINE=0 where the hub is reachable."
        ) from None
    examples = []
    for index, row in enumerate(rows):
        question, answer = str(row["question"]).strip(), str(row["answer"]).strip()
        answer_type = "CLOSED" if answer.lower() in ("yes", "no") else "OPEN"
        image = row["image"].convert("RGB")
        examples.append(Example(None, ((question, answer),), answer_type, split or "train", str(index), inline_image=image))
    return LoadReport(examples, [])
