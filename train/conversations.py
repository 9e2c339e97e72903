"""Build multi-turn doctor/assistant conversations about images from their metadata, as MIDEFICS did.

    python -m train.conversations --metadata ../shared/data/isic/isic_ham10000_sample.jsonl --out runs/isic_conversations.jsonl
    python -m train.conversations --metadata M.jsonl --out C.jsonl --endpoint http://localhost:8000/v1 --api_key KEY --llm gpt-4o-mini

Each conversation is built from its own image's metadata only, and a field that is empty or unknown is never asked
about. Templates (the default) are deterministic: the same metadata always gives the same conversation. With
--endpoint, an OpenAI-compatible chat endpoint writes the turns instead, from a prompt holding that one record.
The split is chosen by a hash of the lesion (or image) id, so one lesion's images never straddle train and test.
Output lines: {"image", "messages": [{"role": "user"|"assistant", "content"}...], "split"}, read by train.vlm.
"""
import json
import os
import sys
import urllib.request
from pathlib import Path

from medvlm import cli
from medvlm.labels import stable_fraction

UNKNOWN = {"", "unknown", "none", "nan", "null", "n/a"}
CONFIRMATION = {
    "histo": "histopathology",
    "follow_up": "follow-up examination",
    "consensus": "expert consensus",
    "confocal": "in-vivo confocal microscopy",
}
# (metadata fields needed, question variants, answer template); a turn is used only when all its fields are known.
TEMPLATES = [
    (("dx_name",), ("What is the most likely diagnosis for this lesion?", "What does this dermoscopic image show?"),
     "The appearance is most consistent with {dx_name}."),
    (("dx_type",), ("How was the diagnosis confirmed?", "What confirmed this diagnosis?"),
     "It was confirmed by {dx_type_text}."),
    (("localization",), ("Where on the body is this lesion?", "What is the anatomical site?"),
     "The lesion is on the {localization}."),
    (("age", "sex"), ("What do we know about the patient?", "Who is the patient?"),
     "The patient is a {age_text}-year-old {sex}."),
]


def known(value) -> bool:
    return value is not None and str(value).strip().lower() not in UNKNOWN


def template_messages(record: dict) -> list[dict]:
    values = {key: str(value).strip() for key, value in record.items() if known(value)}
    if "dx_type" in values:
        values["dx_type_text"] = CONFIRMATION.get(values["dx_type"], values["dx_type"])
    if "age" in values:
        values["age_text"] = str(int(float(values["age"])))
    messages = []
    for fields, questions, answer in TEMPLATES:
        if all(field in values for field in fields):
            variant = questions[int(stable_fraction(str(record.get("image_id", record["image"])) + fields[0]) * len(questions)) % len(questions)]
            messages += [{"role": "user", "content": variant}, {"role": "assistant", "content": answer.format(**values)}]
    return messages


def llm_messages(record: dict, endpoint: str, api_key: str, model: str, timeout: float = 120) -> list[dict]:
    """Ask an OpenAI-compatible endpoint for a conversation about this record alone."""
    facts = {key: value for key, value in record.items() if known(value) and key != "image"}
    prompt = (
        "Write a short conversation between a doctor and a medical imaging assistant about one dermoscopic image. "
        "Use only these facts about this image, and ask nothing they do not answer:\n"
        f"{json.dumps(facts, sort_keys=True)}\n"
        'Reply with JSON only: {"turns": [{"question": "...", "answer": "..."}]} with 2 to 4 turns.'
    )
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "temperature": 0}).encode()
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/chat/completions", data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        content = json.load(response)["choices"][0]["message"]["content"]
    turns = json.loads(content[content.find("{") : content.rfind("}") + 1])["turns"]
    messages = []
    for turn in turns:
        question, answer = str(turn["question"]).strip(), str(turn["answer"]).strip()
        if question and answer:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def build(metadata: Path, out: Path, test_fraction: float, endpoint: str | None, api_key: str, llm: str) -> int:
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(metadata, encoding="utf-8") as source, open(out, "w", encoding="utf-8") as sink:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                image = (metadata.parent / record["image"]).resolve()
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SystemExit(f"train.conversations: error: {metadata} line {number}: {type(e).__name__}: {e}") from None
            messages = llm_messages(record, endpoint, api_key, llm) if endpoint else template_messages(record)
            if not messages:
                continue
            group = str(record.get("lesion_id") or record.get("image_id") or record["image"])
            split = "test" if stable_fraction(group) < test_fraction else "train"
            relative = os.path.relpath(image, out.parent.resolve())
            sink.write(json.dumps({"image": relative, "messages": messages, "split": split}) + "\n")
            written += 1
    return written


def main(argv=None) -> int:
    parser = cli.Parser("python -m train.conversations", __doc__)
    parser.add_argument("--metadata", type=Path, required=True, help="JSONL with an 'image' path per record")
    parser.add_argument("--out", type=Path, required=True, help="conversations JSONL to write")
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--endpoint", help="OpenAI-compatible base URL (…/v1); default: deterministic templates")
    parser.add_argument("--api_key", default=os.environ.get("OPENAI_API_KEY", ""), help="default: $OPENAI_API_KEY")
    parser.add_argument("--llm", default="gpt-4o-mini", help="model name for --endpoint")
    args = parser.parse_args(argv)
    if not args.metadata.is_file():
        parser.error(f"no metadata file at {args.metadata}")
    if not 0 <= args.test_fraction < 1:
        parser.error("--test_fraction must be in [0, 1)")
    return cli.run(parser.prog, lambda: print(
        f"wrote {build(args.metadata, args.out, args.test_fraction, args.endpoint, args.api_key, args.llm)} conversations to {args.out}"))


if __name__ == "__main__":
    sys.exit(main())
