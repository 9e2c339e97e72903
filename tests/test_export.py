"""MedVLM-Tiny as a model anyone can load: python -m medvlm.models export, then plain transformers."""
import json
import re

import pytest
import yaml
from conftest import VQA_RAD

from medvlm import chat, models
from medvlm.chat import GenerationSettings
from medvlm.data import load_examples
from medvlm.models.__main__ import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "medvlm-tiny"
    assert main(["export", "medvlm-tiny", str(out)]) == 0
    return out


def test_the_export_answers_with_plain_transformers_exactly_as_the_app(exported, medvlm_tiny):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(exported).eval()
    processor = AutoProcessor.from_pretrained(exported)
    questions = load_examples(str(VQA_RAD / "vqa_rad.jsonl"), "test", limit=8).examples
    for example in questions:
        image, question = example.image(), example.turns[0][0]
        messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]
        inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
        generated = model.generate(**inputs, max_new_tokens=32)  # its generation_config: greedy, stops at <|im_end|>
        theirs = processor.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        ours = list(chat.stream_reply(medvlm_tiny, [], question, image, GenerationSettings(max_new_tokens=32)))[-1]
        assert theirs == ours, question
    # The template writes medvlm's own prompt, token for token.
    turns = [("What is shown?", "a head CT"), ("Is it normal?", None)]
    ours = medvlm_tiny.family.encode(medvlm_tiny.processor, turns, questions[0].image())["input_ids"]
    messages = [{"role": "user", "content": [{"type": "image", "image": questions[0].image()}, {"type": "text", "text": "What is shown?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a head CT"}]},
                {"role": "user", "content": [{"type": "text", "text": "Is it normal?"}]}]
    theirs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    assert theirs["input_ids"].tolist() == ours.tolist()


def test_the_export_runs_in_the_app_and_carries_a_model_card_and_the_adapter(exported, medvlm_tiny, vqa_rad_image):
    spec = models.resolve(str(exported))
    assert spec.family == "fast_vlm" and spec.adapter is None
    loaded = models.load(spec, device="cpu")
    image = load_examples(str(VQA_RAD / "vqa_rad.jsonl"), "test", limit=1).examples[0].image()
    settings = GenerationSettings(max_new_tokens=16)
    assert list(chat.stream_reply(loaded, [], "Is this a CT?", image, settings))[-1] == \
        list(chat.stream_reply(medvlm_tiny, [], "Is this a CT?", image, settings))[-1]
    assert (exported / "adapter" / "adapter_model.safetensors").is_file()
    # The app's model panel tells what it is, as for medvlm-tiny: what it learnt from, its scores, its limits.
    from medvlm.host import ModelHost
    from ui.chat_tab import model_panel
    from ui.text import markdown_text

    host = ModelHost(device="cpu")
    host.adopt(loaded)
    panel = model_panel(host, None)
    assert markdown_text("Trained on: vqa-rad") in panel and "A 135M-parameter research model" in panel
    card = (exported / "README.md").read_text()
    meta = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", card, re.S).group(1))
    assert meta["pipeline_tag"] == "image-text-to-text" and meta["library_name"] == "transformers"
    names = {m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert "VQA-RAD test closed accuracy" in names and "brain tumour presence, worst held-out wording" in names
    for words in ("Not for clinical use", "non-commercial", "image reliance", "worst held-out wording", "Apache-2.0"):
        assert words in card


def test_export_refuses_in_one_line(exported, tmp_path, capsys):
    assert main(["export", "medvlm-tiny", str(exported)]) == 2  # not empty
    assert main(["export", "llava-1.5-7b", str(tmp_path / "x")]) == 2  # not a MedVLM-Tiny-class model
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 2 and "is not empty" in errors[0] and "already a hub checkpoint" in errors[1]
    with pytest.raises(SystemExit):
        main(["export", "medvlm-tiny"])


def test_the_card_gives_each_worded_task_its_image_reliance(tmp_path):
    """Hand-made eval.json: a task with wordings and its own swapped-image score gets both on one line of the card."""
    from medvlm.models.export import model_card

    wordings = {"per_wording": {"Tumour?": {}}, "worst": 80.0, "worst_wording": "Tumour?", "mean": 85.0,
                "consistency": {"value": 90.0, "ci95": [80.0, 95.0], "n": 20}}
    task = {"closed_accuracy": 90.0, "swapped_closed_accuracy": 77.5, "image_reliance": 12.5, "wordings": wordings}
    (tmp_path / "eval.json").write_text(json.dumps({"labels": {"labels:x/brain/data.yaml": {"tasks": {"tumor_presence": task}}}}))
    line = next(line for line in model_card("medvlm-tiny", str(tmp_path)).splitlines() if "tumor_presence" in line)
    assert "worst held-out wording 80.0" in line and "image reliance 12.5 (own 90.0 vs swapped 77.5)" in line


def test_the_card_warns_of_follow_ups_only_for_an_adapter_trained_on_first_questions(tmp_path):
    """Measured conversation limits (bench/follow_up.py): the follow-up warning goes once --follow_ups trained them;
    the false-premise one (a type named for a tumour-free scan) stays, since no recipe asks it."""
    from medvlm.models.export import model_card

    limits = {}
    for share in (0.0, 0.25):
        folder = tmp_path / str(share)
        folder.mkdir()
        (folder / "train_config.json").write_text(json.dumps({"data": {"follow_ups": share}}))
        limits[share] = model_card("medvlm-tiny", str(folder)).split("## Limits", 1)[1].split("## Licences", 1)[0]
    assert "An earlier question can change a yes/no answer" in limits[0.0]
    assert "An earlier question" not in limits[0.25]
    assert all("it names one even when there is none" in text for text in limits.values())
