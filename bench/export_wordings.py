"""The exported MedVLM-Tiny beside the app's medvlm-tiny, on tumour questions in wordings no code in the project holds
(neither training nor held-out; reversed polarity among them), about 15 tumour and 15 tumour-free brain MRIs and the
44 images such a question does not fit (VQA-RAD chest and abdomen images, blanks: runs/other-images, written by
medvlm.compare --other_images). The export answers through plain transformers, the app through medvlm.chat.

    python -m medvlm.models export medvlm-tiny /tmp/medvlm-tiny-export
    python bench/export_wordings.py /tmp/medvlm-tiny-export      # ~8 min on 2 CPU cores
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from medvlm import chat, models, wordings
from medvlm.chat import GenerationSettings

EXPORT = sys.argv[1]
VAL = REPO.parent / "shared" / "data" / "brain-tumor" / "images" / "val"
tumour = sorted(VAL.glob("c0_*"))[:5] + sorted(VAL.glob("c1_*"))[:5] + sorted(VAL.glob("c2_*"))[:5]
normal = sorted(VAL.glob("bg_*"))[:15]
others = sorted((REPO / "runs" / "other-images").glob("*"))
WORDINGS = [("Can you make out a tumour here?", False), ("Any sign of a tumor here?", False), ("Is something growing in this brain?", False),
            ("Would you say this brain is healthy?", True), ("Does this brain seem unremarkable?", True), ("Is this brain without any tumour?", True)]
known = {wordings.normalize(w.text) for split in (wordings.TRAIN, wordings.HELDOUT) for w in wordings.wordings("tumor_presence", split)}
# "Does the brain look unremarkable?" became a training wording (the state pairs); "...seem unremarkable?" replaced it.
clash = [w for w, _ in WORDINGS if wordings.normalize(w) in known]
if clash:
    sys.exit(f"bench/export_wordings.py: error: now in a wording list, so no longer unheld: {clash}")
model = AutoModelForImageTextToText.from_pretrained(EXPORT).eval()
processor = AutoProcessor.from_pretrained(EXPORT)
app = models.load(models.resolve("medvlm-tiny"), device="cpu")
def export_answer(image, q):
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": q}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
def app_answer(image, q):
    return list(chat.stream_reply(app, [], q, image, GenerationSettings(max_new_tokens=8)))[-1]
same = total = 0
# Last column: answers that imply a tumour (yes, or no to a reversed wording) about images the question does not fit.
print(f"{'wording':40s} tumour right  normal right  other/blank: a tumour implied")
for q, rev in WORDINGS:
    row = []
    for group, truth in ((tumour, True), (normal, False), (others, None)):
        right = said = 0
        for path in group:
            image = Image.open(path).convert("RGB")
            a, b = export_answer(image, q), app_answer(image, q)
            same, total = same + (a == b), total + 1
            yes = a.lower().startswith("yes")
            present = (not yes) if rev else yes
            if truth is None:
                said += present
            else:
                right += present == truth
        row.append(f"{right}/{len(group)}" if truth is not None else f"{said}/{len(group)}")
    print(f"{q:40s} {row[0]:13s} {row[1]:13s} {row[2]}")
print(f"export answers identical to the app's: {same}/{total}")
