"""Today's VLMs through their processors' chat templates (medvlm.models.families.ChatTemplateFamily): tiny random
Gemma 3 (MedGemma's layout), Idefics3 (SmolVLM's) and Qwen2.5-VL checkpoints with their real processor classes and
published templates, through chat, batched scoring, --show_prompt, training, adapters and medvlm.serve."""
import json
import re
import shutil
from dataclasses import replace

import pytest
import torch
from conftest import REPO
from PIL import Image
from tiny_models import CHAT_TEMPLATE_MODELS

from medvlm import chat, models
from medvlm.chat import GenerationSettings
from medvlm.data import Example
from medvlm.errors import UserFacingError
from medvlm.predict import answer_examples
from medvlm.settings import IGNORE_INDEX

MODEL_TYPES = sorted(CHAT_TEMPLATE_MODELS)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {kind: save(tmp_path_factory.mktemp(kind)) for kind, save in CHAT_TEMPLATE_MODELS.items()}


@pytest.fixture(scope="module")
def loaded_models(folders):
    return {kind: models.load(models.resolve(str(folder)), device="cpu") for kind, folder in folders.items()}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """Images of several sizes and shapes: Idefics3 cuts them into different numbers of tiles, Qwen2.5-VL into
    different numbers of patches, so a batch must pad what one image at a time never needs."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for k, size in enumerate([(50, 40), (90, 30), (40, 40), (30, 80)]):
        path = folder / f"picture{k}.png"
        Image.linear_gradient("L").resize(size).convert("RGB").rotate(30 * k).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_any_image_text_to_text_checkpoint_with_a_template_falls_to_the_family(kind, folders):
    spec = models.resolve(str(folders[kind]))
    assert spec.family == "chat_template" and models.unavailable_reason(spec, "cpu") is None


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_chat_streams_and_follows_up(kind, loaded_models, pictures):
    loaded = loaded_models[kind]
    image = Image.open(pictures[0]).convert("RGB")
    settings = GenerationSettings(max_new_tokens=8)
    seen = list(chat.stream_reply(loaded, [], "Is there a fracture?", image, settings))
    assert seen[-1] and all(seen[-1].startswith(part) for part in seen[:-1])
    # The follow-up's prompt holds the first turn, and the image stays on it.
    follow = list(chat.stream_reply(loaded, [("Is there a fracture?", seen[-1])], "Where is it?", image, settings))[-1]
    direct = list(chat.stream_reply(loaded, [], "Where is it?", image, settings))[-1]
    assert follow and isinstance(follow, str)
    inputs = chat.encode_to_fit(loaded, [("Is there a fracture?", seen[-1])], "Where is it?", image, 8)
    alone = chat.encode_to_fit(loaded, [], "Where is it?", image, 8)
    assert inputs["input_ids"].shape[1] > alone["input_ids"].shape[1] and direct is not None
    text_only = list(chat.stream_reply(loaded, [], "What is a pneumothorax?", None, settings))[-1]
    assert isinstance(text_only, str)


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_batched_answers_equal_one_at_a_time(kind, loaded_models, pictures):
    loaded = loaded_models[kind]
    questions = [Example(path, ((question, "yes"),)) for path in pictures for question in ("Is there a fracture?", "Which organ?")]
    together = answer_examples(loaded, questions)
    alone = [answer_examples(loaded, [question])[0] for question in questions]
    assert together == alone and all(a.p_yes is not None for a in together)
    assert [a.p_yes for a in together] == pytest.approx([a.p_yes for a in alone], abs=1e-4)


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_show_prompt_is_the_processors_own_input(kind, folders, loaded_models, capsys):
    from medvlm.models.__main__ import main

    loaded = loaded_models[kind]
    family, processor = loaded.family, loaded.processor
    turns = [("What does this image show?", "An axial MRI."), (family.ask("Is there a tumour?", short_answer=True), None)]
    fed = processor.tokenizer.decode(family.encode(processor, turns, Image.new("RGB", (64, 64)))["input_ids"][0])
    image_token = processor.tokenizer.convert_ids_to_tokens(getattr(processor.tokenizer, "image_token_id", None) or processor.image_token_id)
    shown = family.show_prompt(turns, image_marker="<IMAGE>", processor=processor)
    assert re.sub(f"({re.escape(image_token)})+", "<IMAGE>", fed) == shown
    assert shown.count("<IMAGE>") >= 1 and "An axial MRI." in shown and family.short_answer_instruction in shown
    assert main(["--show_prompt", str(folders[kind])]) == 0
    printed = capsys.readouterr().out
    assert "(chat_template family)" in printed and "A tumour detector (YOLOv8) found no tumour" in printed


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_training_masks_exactly_the_answer_lowers_the_loss_and_the_adapter_reloads(kind, folders, pictures, tmp_path):
    from test_train import loss_after_steps

    from train.vlm import collate, encode_with_labels

    loaded = models.load(models.resolve(str(folders[kind])), device="cpu")
    end_of_turn = loaded.tokenizer.decode(loaded.family.eos_token_ids(loaded.processor)[:1])
    item = encode_with_labels(loaded, [("Is it a fracture?", "yes, a fracture"), ("Where?", "left femur")],
                              Image.open(pictures[1]).convert("RGB"))
    labelled = loaded.tokenizer.decode(item["input_ids"][item["labels"] != IGNORE_INDEX])
    # Each answer and its end-of-turn token, and nothing the template writes after them; before an answer only what
    # the template itself puts between its generation prompt and the answer (SmolVLM's space after "Assistant:").
    messages = loaded.family.messages
    prompt = loaded.processor.apply_chat_template(messages([("q", None)], None), add_generation_prompt=True, tokenize=False)
    full = loaded.processor.apply_chat_template(messages([("q", "ANSWER")], None), tokenize=False)
    lead = full[len(prompt):].split("ANSWER")[0]
    assert full.startswith(prompt) and lead in ("", " ")
    assert labelled == f"{lead}yes, a fracture{end_of_turn}{lead}left femur{end_of_turn}"
    assert int((item["labels"] != IGNORE_INDEX).sum()) < item["input_ids"].shape[0] // 2
    items = [item, encode_with_labels(loaded, [("What is shown?", "a head CT")], Image.open(pictures[3]).convert("RGB"))]
    batch = collate(loaded.tokenizer.pad_token_id)(items)
    losses, model = loss_after_steps(loaded, batch, steps=3)
    assert losses[-1] < losses[0]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert {name.split(".lora_")[0].rsplit(".", 1)[1] for name in trainable} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert not any(part in name for name in trainable for part in ("vision", "visual"))  # never the vision tower
    model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "examples")}
    with torch.no_grad():
        trained = model(**inputs).logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = models.load(replace(models.resolve(str(folders[kind])), adapter=str(tmp_path / "adapter")), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(**inputs).logits, trained)


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_medvlm_serve_answers_it_as_in_process(kind, loaded_models, pictures):
    import base64
    import io

    from fastapi.testclient import TestClient

    from medvlm.serve import build_server

    loaded = loaded_models[kind]
    image = Image.open(pictures[2]).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    body = {"model": kind, "max_tokens": 8, "logprobs": True, "top_logprobs": 2, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Is there a fracture?"}]}]}
    with TestClient(build_server(loaded, kind)) as client:
        reply = client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    choice = reply.json()["choices"][0]
    expected = list(chat.stream_reply(loaded, [], "Is there a fracture?", image, GenerationSettings(max_new_tokens=8)))[-1]
    assert choice["message"]["content"] == expected and len(choice["logprobs"]["content"][0]["top_logprobs"]) == 2


def test_what_cannot_run_is_one_line(folders, tmp_path):
    text_model = tmp_path / "bert"
    text_model.mkdir()
    (text_model / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserFacingError, match="not an image-text-to-text model"):
        models.resolve(str(text_model))
    no_template = tmp_path / "no-template"
    shutil.copytree(folders["qwen2_5_vl"], no_template)
    for name in ("chat_template.jinja", "chat_template.json"):
        (no_template / name).unlink(missing_ok=True)
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = no_template / name
        if path.is_file():
            config = json.loads(path.read_text())
            config.pop("chat_template", None)
            path.write_text(json.dumps(config))
    with pytest.raises(UserFacingError, match="has no chat template") as refused:
        models.resolve(str(no_template))
    assert "\n" not in str(refused.value)


def test_registry_names_todays_models_and_a_gated_one_says_how_to_get_access():
    for name in ("medgemma-4b", "smolvlm-256m", "smolvlm-500m", "qwen2.5-vl-3b", "lingshu-7b"):
        spec = models.REGISTRY[name]
        assert spec.family == "chat_template" and spec.params_billion and spec.description
    reason = models.unavailable_reason(models.REGISTRY["medgemma-4b"], "cpu")  # offline, not in the cache
    assert "gated" in reason and "huggingface.co/google/medgemma-4b-it" in reason and "\n" not in reason
    from medvlm.models.loading import resolve_quantize

    assert resolve_quantize(models.REGISTRY["medgemma-4b"], "cuda", "auto") == "nf4"  # 4-bit where it helps
    assert resolve_quantize(models.REGISTRY["smolvlm-256m"], "cuda", "auto") is None


def test_the_one_trainer_runs_a_chat_template_model_end_to_end(folders, tmp_path, vqa_rad_image):
    """python -m train.vlm on a Qwen2.5-VL folder: rows of one example (no packing), augmented views, the final
    evaluation with swapped and no-image passes, and an adapter the app loads back."""
    from train.vlm import main

    other = str(vqa_rad_image.parent / "synpic29265.jpg")
    data = tmp_path / "vqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"image": str(vqa_rad_image), "question": "Is there an infarct?", "answer": "yes", "answer_type": "CLOSED", "split": "train"},
        {"image": other, "question": "What organ?", "answer": "lungs", "answer_type": "OPEN", "split": "train"},
        {"image": str(vqa_rad_image), "question": "Is it normal?", "answer": "no", "answer_type": "CLOSED", "split": "test"},
        {"image": other, "question": "Which plane?", "answer": "axial", "answer_type": "OPEN", "split": "test"}]))
    run = tmp_path / "run"
    assert main(["--model", str(folders["qwen2_5_vl"]), "--data", str(data), "--output_dir", str(run), "--max_steps", "2",
                 "--batch_size", "2", "--eval_batch_size", "2", "--max_new_tokens", "4"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["family"] == "chat_template" and config["resolved"]["train_rows"] == 2  # one example a row
    assert json.loads((run / "eval.json").read_text())["questions"] == 2
    loaded = models.load(models.resolve(str(folders["qwen2_5_vl"]), adapter=str(run / "adapter")), device="cpu")
    assert list(chat.stream_reply(loaded, [], "Is it normal?", Image.open(vqa_rad_image).convert("RGB"), GenerationSettings(max_new_tokens=4)))


def test_evaluate_and_compare_run_a_chat_template_model(folders, tmp_path, vqa_rad_image):
    """medvlm.evaluate and medvlm.compare, as their CLIs are run, on a tiny Idefics3 (SmolVLM) folder."""
    from medvlm import compare, evaluate
    from medvlm.store import Store

    other = str(vqa_rad_image.parent / "synpic29265.jpg")
    data = tmp_path / "vqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"image": str(vqa_rad_image), "question": "Is it normal?", "answer": "no", "answer_type": "CLOSED", "split": "test"},
        {"image": other, "question": "Which plane?", "answer": "axial", "answer_type": "OPEN", "split": "test"}]))
    db = tmp_path / "m.db"
    model = str(folders["idefics3"])
    assert evaluate.main(["--model", model, "--data", str(data), "--split", "test", "--db", str(db), "--max_new_tokens", "4"]) == 0
    assert Store(db).query("SELECT COUNT(*) FROM predictions")[0][0] == 2
    brain = REPO.parent / "shared" / "data" / "brain-tumor" / "data.yaml"
    assert compare.main(["--data", str(brain), "--split", "val", "--model", model, "--limit", "2",
                         "--output_dir", str(tmp_path / "compare")]) == 0
    report = json.loads((tmp_path / "compare" / "report.json").read_text())
    assert report["images"] == 2
