"""Fine-tuning: data validation, the answer-only label mask, real optimisation steps (LoRA and 4-bit QLoRA on CPU),
adapter round trips, the CLI with --resume, and the conversation builder."""
import http.server
import json
import subprocess
import sys
import threading

import pytest
import torch
from conftest import REPO, SHARED_DATA
from tiny_models import save_tiny_idefics, save_tiny_llava

from medvlm import models
from medvlm.data import Example, load_examples
from medvlm.errors import UserFacingError
from medvlm.settings import IGNORE_INDEX
from train import conversations
from train.vlm import (
    ImagePackedDataset,
    LoraArguments,
    TrainArguments,
    add_lora,
    answer_loss,
    collate,
    encode_with_labels,
    freeze_batchnorm,
    main,
    make_optimizer,
)

ISIC = SHARED_DATA / "isic" / "isic_ham10000_sample.jsonl"


@pytest.fixture(scope="module")
def images(vqa_rad_image):
    from medvlm.images import load_image

    return load_image(vqa_rad_image), load_image(vqa_rad_image.parent / "synpic29265.jpg")


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return save_tiny_llava(tmp_path_factory.mktemp("train-llava"))


@pytest.fixture(scope="module")
def idefics_dir(tmp_path_factory):
    return save_tiny_idefics(tmp_path_factory.mktemp("train-idefics"))


@pytest.fixture
def vqa_jsonl(tmp_path, vqa_rad_image):
    other = str(vqa_rad_image.parent / "synpic29265.jpg")
    rows = [
        {"image": str(vqa_rad_image), "question": "Is there an infarct?", "answer": "yes", "answer_type": "CLOSED", "split": "train"},
        {"image": other, "question": "What organ?", "answer": "lungs", "answer_type": "OPEN", "split": "train"},
        {"image": str(vqa_rad_image), "question": "Is it normal?", "answer": "no", "answer_type": "CLOSED", "split": "test"},
        {"image": other, "question": "Which plane?", "answer": "axial", "answer_type": "OPEN", "split": "test"},
    ]
    path = tmp_path / "vqa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def labelled_text(loaded, item) -> str:
    return loaded.tokenizer.decode(item["input_ids"][item["labels"] != IGNORE_INDEX])


# --- label mask ----------------------------------------------------------------------------------------------------


def test_label_mask_is_exactly_the_answers_llava(llava_dir, images):
    loaded = models.load(models.resolve(str(llava_dir)), device="cpu")
    item = encode_with_labels(loaded, [("Is it a fracture?", "yes, a fracture"), ("Where?", "left femur")], images[0])
    assert labelled_text(loaded, item) == " yes, a fracture</s> left femur</s>"
    assert (item["labels"] != IGNORE_INDEX).sum() < item["input_ids"].shape[0] // 2  # prompt, image and questions masked


def test_label_mask_is_exactly_the_answers_idefics(idefics_dir, images):
    loaded = models.load(models.resolve(str(idefics_dir)), device="cpu")
    item = encode_with_labels(loaded, [("What organ?", "the liver")], images[0])
    assert labelled_text(loaded, item) == " the liver<end_of_utterance>"  # not the template's newline after it


def test_label_mask_keeps_the_end_token_when_pad_is_eos(medvlm_tiny, images):
    """MedVLM-Tiny's pad == eos (<|im_end|>): masking by id would drop the answer's own end token."""
    assert medvlm_tiny.tokenizer.pad_token_id == medvlm_tiny.tokenizer.convert_tokens_to_ids("<|im_end|>")
    item = encode_with_labels(medvlm_tiny, [("Is the lung normal?", "No")], images[0])
    assert labelled_text(medvlm_tiny, item) == "No<|im_end|>"


# --- packing several questions about one image into one row ---------------------------------------------------------


def same_image_examples(vqa_rad_image, answers=("yes", "no", "axial")):
    questions = ("Is there an effusion?", "Is there a mass?", "Which plane is this?")  # the first two share "Is there"
    return [Example(str(vqa_rad_image), ((q, a),), id=str(k)) for k, (q, a) in enumerate(zip(questions, answers))]


def test_pack_shares_every_common_opening_once():
    """A prefix tree: what all three share, then what two share, then each one's own tokens (the labelled last token
    always its own); each token sees only its own part and its ancestors, and positions continue from them."""
    from medvlm import packing

    def item(ids):
        ids = torch.tensor(ids)
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-1] = 0
        return {"input_ids": ids, "labels": labels, "pixel_values": torch.zeros(3, 2, 2)}

    row = packing.pack([item([1, 2, 3, 4, 5, 9]), item([1, 2, 3, 4, 6, 9]), item([1, 2, 7, 8, 9])])
    assert row["input_ids"].tolist() == [1, 2, 3, 4, 5, 9, 6, 9, 7, 8, 9]
    assert row["branch"].tolist() == [-1, -1, 3, 3, 0, 0, 1, 1, 2, 2, 2]
    assert row["position_ids"].tolist() == [0, 1, 2, 3, 4, 5, 4, 5, 2, 3, 4]
    assert row["parents"].tolist() == [3, 3, -1, -1] and packing.branches_in(row) == 3
    mask, positions = packing.attention([row], 12)
    assert mask[0, 0, 6].nonzero()[:, 0].tolist() == [0, 1, 2, 3, 6]  # the second's own token: not the first's
    assert mask[0, 0, 10].nonzero()[:, 0].tolist() == [0, 1, 8, 9, 10]
    assert positions[0, :11].tolist() == row["position_ids"].tolist()
    same = packing.pack([item([1, 2, 3]), item([1, 2, 3])])  # the same question twice: all but the labelled token
    assert same["branch"].tolist() == [-1, -1, 0, 1] and packing.branches_in(same) == 2


@pytest.mark.parametrize("model, follow_ups", [("llava", 0.0), ("medvlm-tiny", 0.0), ("medvlm-tiny", 1.0)])
def test_packed_row_gives_each_answer_the_logits_it_gets_alone(model, follow_ups, llava_dir, medvlm_tiny_base, vqa_rad_image):
    """follow_ups 1.0: every question asked after another one about the image; each row holds 2-turn conversations
    that share their opening (and contain another branch's whole question and answer)."""
    loaded = models.load(models.resolve(str(llava_dir)), device="cpu") if model == "llava" else medvlm_tiny_base
    loaded.tokenizer.padding_side = "right"
    examples = same_image_examples(vqa_rad_image)
    packed = ImagePackedDataset(loaded, [(examples, 1.0)], short_answer=True, max_branches=8, augment=False, follow_ups=follow_ups)
    assert [len(e.turns) for e in packed.packs[0]] == [1 + (follow_ups > 0)] * 3
    alone = ImagePackedDataset(loaded, [(packed.packs[0], 1.0)], short_answer=True, max_branches=1, augment=False, follow_ups=0.0)
    assert len(packed) == 1 and len(alone) == 3
    pad = loaded.tokenizer.pad_token_id
    packed_batch = collate(pad)([packed[0], alone[0]])  # a pack beside a plain row: padding and both mask kinds
    alone_batch = collate(pad)([alone[i] for i in range(3)])
    assert int(packed_batch["examples"]) == 4 and int(alone_batch["examples"]) == 3
    assert packed_batch["input_ids"][0].ne(pad).sum() < alone_batch["input_ids"].ne(pad).sum()  # the prefix once

    def answer_logits(batch):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "examples")}
        with torch.no_grad():
            logits = loaded.model.eval()(**inputs).logits
        return logits[:, :-1][batch["labels"][:, 1:] != IGNORE_INDEX]

    packed_logits = answer_logits(packed_batch)
    alone_logits = answer_logits(alone_batch)
    if follow_ups:  # an answer in a shared opening is one branch's and counted once: match each alone answer token's logits
        nearest = torch.cdist(alone_logits, packed_logits, p=float("inf")).min(dim=1).values
        assert bool((nearest < 1e-3).all()), nearest
    else:
        torch.testing.assert_close(packed_logits[: len(alone_logits)], alone_logits, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(packed_logits[len(alone_logits):], alone_logits[: len(packed_logits) - len(alone_logits)], atol=1e-3, rtol=1e-4)
    with torch.no_grad():
        full = loaded.model(**{k: v for k, v in alone_batch.items() if k != "examples"}).loss
        torch.testing.assert_close(answer_loss(loaded.model, alone_batch), full)  # loss on answer positions only


def test_follow_ups_ask_each_chosen_question_after_another_about_its_image(vqa_rad_image):
    from train.vlm import with_follow_ups

    examples = [Example(str(vqa_rad_image), ((f"Question {k}?", f"answer {k}"),), id=str(k)) for k in range(12)]
    assert with_follow_ups(examples, 0.0) == examples and with_follow_ups(examples[:1], 1.0) == examples[:1]
    half = with_follow_ups(examples, 0.5)
    assert half == with_follow_ups(examples, 0.5)  # a fixed choice: a resumed run draws the same rows
    asked_after = [e for e in half if len(e.turns) == 2]
    assert 0 < len(asked_after) < len(examples)
    for before, after in zip(examples, half):
        assert after.turns[-1] == before.turns[0] and after.task == before.task
        if len(after.turns) == 2:
            assert after.turns[0] != before.turns[0] and after.turns[0] in [e.turns[0] for e in examples]


def test_augment_changes_the_pixels_only(medvlm_tiny_base, vqa_rad_image):
    """Augmentation (on by default): each draw of a row gets a new view of its image; the tokens and the answer
    mask stay the same."""
    examples = same_image_examples(vqa_rad_image)
    plain = ImagePackedDataset(medvlm_tiny_base, [(examples, 1.0)], short_answer=True, max_branches=8, augment=False, follow_ups=0.0)[0]
    augmented = ImagePackedDataset(medvlm_tiny_base, [(examples, 1.0)], short_answer=True, max_branches=8, augment=True, follow_ups=0.0)
    first, second = augmented[0], augmented[0]
    for key in ("input_ids", "labels", "attention_mask", "branch"):
        assert torch.equal(first[key], plain[key]) and torch.equal(second[key], plain[key])
    assert first["pixel_values"].shape == plain["pixel_values"].shape
    assert not torch.equal(first["pixel_values"], plain["pixel_values"])
    assert not torch.equal(first["pixel_values"], second["pixel_values"])


def test_idefics_rows_hold_one_example(idefics_dir, vqa_rad_image):
    """IDEFICS' per-token image attention can't be cut into branches: its rows stay one example each."""
    loaded = models.load(models.resolve(str(idefics_dir)), device="cpu")
    dataset = ImagePackedDataset(loaded, [(same_image_examples(vqa_rad_image), 1.0)], short_answer=True, max_branches=8, augment=False,
                                 follow_ups=0.0)
    assert len(dataset) == 3 and "branch" not in dataset[0]


# --- optimisation steps --------------------------------------------------------------------------------------------


def loss_after_steps(loaded, batch, quantized=False, steps=1):
    model = add_lora(loaded, LoraArguments(), quantized=quantized, checkpointing=quantized)
    model.train()
    freeze_batchnorm(model)  # as train.vlm does: BatchNorm statistics are not part of the adapter
    optimizer = make_optimizer(model, lora_lr=1e-2, projector_lr=1e-2, paged_8bit=False)
    losses = []
    for _ in range(steps + 1):
        loss = answer_loss(model, batch)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return losses, model


@pytest.mark.parametrize("family", ["llava", "idefics"])
def test_one_step_lowers_the_loss_on_a_repeated_batch(family, llava_dir, idefics_dir, images):
    loaded = models.load(models.resolve(str(llava_dir if family == "llava" else idefics_dir)), device="cpu")
    items = [encode_with_labels(loaded, [("What is shown?", "a head CT")], images[0]),
             encode_with_labels(loaded, [("Is it normal?", "no")], images[1])]
    batch = collate(loaded.tokenizer.pad_token_id)(items)
    losses, model = loss_after_steps(loaded, batch)
    assert losses[1] < losses[0]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # LoRA on the attention projections of the language model's decoder layers, and nowhere else: not the vision
    # tower, IDEFICS' perceiver or its gated cross-attention.
    wrapped = {name.split(".lora_")[0].rsplit(".", 1)[1] for name in trainable}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert not any(part in name for name in trainable for part in ("vision", "perceiver", "cross_attn"))


def test_qlora_step_on_cpu(llava_dir, images):
    import bitsandbytes as bnb

    loaded = models.load(models.resolve(str(llava_dir)), device="cpu", quantize="nf4")
    batch = collate(loaded.tokenizer.pad_token_id)([encode_with_labels(loaded, [("What is shown?", "a head CT")], images[0])])
    losses, model = loss_after_steps(loaded, batch, quantized=True)
    base_layer = model.base_model.model.model.language_model.layers[0].self_attn.q_proj.base_layer
    assert isinstance(base_layer, bnb.nn.Linear4bit)
    assert losses[1] < losses[0]


def test_medvlm_tiny_adapter_with_projector_round_trips(images, tmp_path):
    from dataclasses import replace

    loaded = models.load(replace(models.REGISTRY["medvlm-tiny"], adapter=None), device="cpu")
    item = encode_with_labels(loaded, [("Is the lung normal?", "No")], images[0])
    batch = collate(loaded.tokenizer.pad_token_id)([item])
    _, model = loss_after_steps(loaded, batch)
    model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "examples")}
    with torch.no_grad():
        trained = model(**inputs).logits
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_size < 30e6
    reloaded = models.load(replace(models.REGISTRY["medvlm-tiny"], adapter=str(tmp_path / "adapter")), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(**inputs).logits, trained)


# --- the CLI ---------------------------------------------------------------------------------------------------------


def test_cli_trains_evaluates_and_resumes(llava_dir, vqa_jsonl, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--model", str(llava_dir), "--data", str(vqa_jsonl), "--output_dir", str(run), "--batch_size", "2",
            "--save_steps", "1", "--eval_batch_size", "2", "--max_new_tokens", "4"]
    assert main(args + ["--max_steps", "2"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["family"] == "llava" and config["resolved"]["train_records"] == {str(vqa_jsonl): 2}
    assert config["resolved"]["lora_lr"] == 2e-4 and config["data"]["augment"]  # the family's defaults
    assert json.loads((run / "checkpoint" / "progress.json").read_text())["step"] == 2
    assert (run / "adapter" / "adapter_config.json").is_file()
    result = json.loads((run / "eval.json").read_text())
    assert result["closed_n"] == 1 and result["open_n"] == 1 and result["questions"] == 2
    assert result["swapped_closed_accuracy"] is not None  # the closed question asked again about the other test image
    assert result["majority_baseline"]["closed_n"] == 1  # each question once: swapped copies are no new questions
    # own image (2), the closed question about the other image (1), and once with no image (1)
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 4

    assert main(args + ["--max_steps", "3"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(args + ["--max_steps", "3", "--resume"]) == 0
    assert json.loads((run / "checkpoint" / "progress.json").read_text())["step"] == 3
    # The data changed under the run (here an answer; as well the code that builds label questions): refused, and the
    # checkpoint and config.json are left as they were.
    vqa_jsonl.write_text(vqa_jsonl.read_text().replace('"lungs"', '"heart"'))
    saved = (run / "config.json").read_text()
    capsys.readouterr()
    assert main(args + ["--max_steps", "4", "--resume"]) == 2
    assert "started on other training questions" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (run / "config.json").read_text() == saved
    assert json.loads((run / "checkpoint" / "progress.json").read_text())["step"] == 3
    (run / "config.json").write_text(saved[: len(saved) // 2])  # cut short: one line too
    assert main(args + ["--max_steps", "4", "--resume"]) == 2
    assert "is not a run's config" in capsys.readouterr().err.strip().splitlines()[-1]


def test_init_adapter_trains_on_from_a_saved_adapter(llava_dir, vqa_jsonl, tmp_path, capsys):
    """--init_adapter starts from a saved adapter's weights, not a fresh LoRA: at a learning rate too small to move
    anything, the adapter saved after one more step is the one it started from (a fresh LoRA's B is all zeros)."""
    from safetensors.torch import load_file

    args = ["--model", str(llava_dir), "--data", str(vqa_jsonl), "--batch_size", "2", "--eval_split", "none"]
    first = tmp_path / "first"
    assert main(args + ["--output_dir", str(first), "--max_steps", "2", "--lora_r", "8"]) == 0  # not the default rank
    started = load_file(first / "adapter" / "adapter_model.safetensors")
    assert any(name.endswith("lora_B.weight") and tensor.abs().max() > 0 for name, tensor in started.items())
    on = tmp_path / "on"
    assert main(args + ["--output_dir", str(on), "--max_steps", "1", "--init_adapter", str(first / "adapter"),
                        "--lr", "1e-30", "--projector_lr", "1e-30"]) == 0
    went_on = load_file(on / "adapter" / "adapter_model.safetensors")
    assert went_on.keys() == started.keys()
    assert all(torch.allclose(went_on[name], started[name]) for name in started)
    assert json.loads((on / "config.json").read_text())["train"]["init_adapter"] == str(first / "adapter")
    capsys.readouterr()
    assert main(args + ["--output_dir", str(tmp_path / "none"), "--init_adapter", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("python -m train.vlm: error: --init_adapter: No adapter folder")
    assert not (tmp_path / "none").exists()
    # The LoRA shape is the adapter's: a rank given beside it would be ignored, so it is refused before anything loads.
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--output_dir", str(tmp_path / "reshaped"), "--init_adapter", str(first / "adapter"), "--lora_r", "4"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "python -m train.vlm: error: --lora_r: --init_adapter trains on the adapter's own LoRA shape; leave them out")
    assert not (tmp_path / "reshaped").exists()
    saved = json.loads((first / "adapter" / "adapter_config.json").read_text())
    assert json.loads((on / "config.json").read_text())["resolved"]["lora"] == {
        "lora_r": 8, "lora_alpha": saved["lora_alpha"], "lora_dropout": saved["lora_dropout"]} and saved["r"] == 8


def test_lora_target_adapts_the_modules_it_names(llava_dir, vqa_jsonl, tmp_path, capsys):
    """--lora_target replaces the family's modules (attention only) with the ones a regular expression names, here one
    attention and one MLP projection, and the adapter saved holds LoRA weights on exactly those. Resuming the run
    without it, or naming nothing, stops in one line (the resume ended in a traceback: the weights did not fit)."""
    from safetensors.torch import load_file

    args = ["--model", str(llava_dir), "--data", str(vqa_jsonl), "--batch_size", "2", "--eval_split", "none", "--max_steps", "1"]
    pattern = r".*language_model.*\.(q_proj|gate_proj)"
    run = tmp_path / "mlp"
    assert main(args + ["--output_dir", str(run), "--lora_target", pattern]) == 0
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in load_file(run / "adapter" / "adapter_model.safetensors") if ".lora_" in name}
    assert adapted == {"q_proj", "gate_proj"}
    assert json.loads((run / "config.json").read_text())["resolved"]["lora_target"] == pattern
    capsys.readouterr()
    # Resumed without it, the checkpoint's weights would not fit the family's modules: refused in one line.
    assert main(args[:-2] + ["--max_steps", "2", "--output_dir", str(run), "--resume"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"python -m train.vlm: error: {run} started with another LoRA (--lora_target): resume it with the values in its "
        "config.json, or train into another --output_dir.")
    assert main(args[:-2] + ["--max_steps", "2", "--output_dir", str(run), "--resume", "--lora_target", pattern]) == 0
    assert main(args + ["--output_dir", str(tmp_path / "none"), "--lora_target", r".*no_such_proj"]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert said[-1].startswith("python -m train.vlm: error: --lora_target: '.*no_such_proj' names no module of "), said
    assert not (tmp_path / "none" / "adapter").exists()


def test_a_loss_that_turns_non_finite_stops_training_with_one_line(llava_dir, vqa_jsonl, tmp_path, capsys):
    """A learning rate that blows the weights up: the run stops at the first non-finite loss, says so in one line, and
    writes no adapter (before this, it saved one of NaNs and said "adapter saved")."""
    run = tmp_path / "run"
    assert main(["--model", str(llava_dir), "--data", str(vqa_jsonl), "--output_dir", str(run), "--batch_size", "1",
                 "--max_steps", "4", "--lr", "1e30", "--eval_split", "none"]) == 2
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("python -m train.vlm: error:")]
    assert len(said) == 1 and "the loss is nan at step 2" in said[0] and "training stopped" in said[0], said
    assert not (run / "adapter").exists()


@pytest.mark.parametrize("argv, named", [
    (["--batch_size", "many"], "--batch_size"), (["--pack_size", "0"], "--pack_size"), (["--quantize", "8bit"], "--quantize"),
    (["--lora_dropout", "1.5", "--max_new_tokens", "0"], "--lora_dropout, --max_new_tokens"), (["--limit", "-3"], "--limit"),
    (["--lr", "nan", "--projector_lr", "inf"], "--lr, --projector_lr"), (["--epochs", "nan"], "--epochs"),
    (["--follow_ups", "1.5"], "--follow_ups"), (["--lora_target", "(q_proj"], "--lora_target: not a regular expression"),
])
def test_cli_rejects_bad_arguments_in_one_line(argv, named, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and named in err[-1] and "Traceback" not in "".join(err)


def test_cli_help_explains_every_argument(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0 and "python -m train.vlm" in out
    assert "examples packed in one row" in out and "continue from the run folder's checkpoint" in out


# --- data ----------------------------------------------------------------------------------------------------------


def test_bad_records_are_reported_with_line_numbers(tmp_path, vqa_rad_image):
    lines = [
        json.dumps({"image": str(vqa_rad_image), "question": "Q?", "answer": "yes"}),
        json.dumps({"image": "missing.jpg", "question": "Q?", "answer": "yes"}),
        json.dumps({"image": str(vqa_rad_image), "question": "Q?", "answer": "  "}),
        json.dumps({"image": str(vqa_rad_image), "question": "Q?", "answer": "no", "colour": "red"}),
        "{broken json",
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserFacingError) as error:
        load_examples(str(path))
    message = str(error.value)
    assert "4 bad record(s)" in message and "--skip-bad" in message
    for expected in ("line 2: image missing.jpg", "line 3: empty answer", "line 4: unknown field(s) colour", "line 5: not valid JSON"):
        assert expected in message
    report = load_examples(str(path), skip_bad=True)
    assert len(report.examples) == 1 and len(report.skipped) == 4


def test_vqa_rad_loads_with_its_standard_split():
    path = SHARED_DATA / "vqa-rad" / "vqa_rad.jsonl"
    train, test = load_examples(str(path), "train").examples, load_examples(str(path), "test").examples
    assert (len(train), len(test)) == (1797, 451)
    assert sum(e.answer_type == "CLOSED" for e in test) == 272


def test_hub_dataset_without_the_hub_says_what_to_do():
    with pytest.raises(UserFacingError, match="Could not load dataset 'flaviagiammarino/vqa-rad'"):
        load_examples("flaviagiammarino/vqa-rad", "test")


def test_conversations_use_only_their_own_metadata(tmp_path):
    out = tmp_path / "conversations.jsonl"
    assert conversations.main(["--metadata", str(ISIC), "--out", str(out)]) == 0
    records = {json.loads(line)["image"]: json.loads(line) for line in ISIC.read_text().splitlines()}
    built = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(built) == len(records) == 70
    for conversation in built:
        own = records["images/" + conversation["image"].rsplit("/", 1)[-1]]
        answers = " ".join(m["content"] for m in conversation["messages"] if m["role"] == "assistant")
        assert own["dx_name"] in answers
        if conversations.known(own["localization"]):
            assert own["localization"] in answers
        else:
            assert "lesion is on the" not in answers  # an unknown site is never asked about
        others = {r["dx_name"] for r in records.values()} - {own["dx_name"]}
        assert not any(other in answers for other in others)
    # train.vlm reads what the builder writes
    assert len(load_examples(str(out), "train").examples) + len(load_examples(str(out), "test").examples) == 70


def test_conversations_never_ask_about_empty_fields(tmp_path, vqa_rad_image):
    metadata = tmp_path / "meta.jsonl"
    metadata.write_text(json.dumps({"image": str(vqa_rad_image), "image_id": "x1", "dx_name": "melanoma",
                                    "dx_type": "", "age": "unknown", "sex": "female", "localization": None}) + "\n")
    conversations.main(["--metadata", str(metadata), "--out", str(tmp_path / "c.jsonl")])
    messages = json.loads((tmp_path / "c.jsonl").read_text())["messages"]
    assert len(messages) == 2  # only the diagnosis is known: one question, about it
    assert messages[0]["content"] in conversations.TEMPLATES[0][1]
    assert messages[1]["content"] == "The appearance is most consistent with melanoma."


def test_conversations_through_an_openai_compatible_endpoint(tmp_path):
    """A chat endpoint on loopback: each request carries one record's metadata, and its turns come back."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body["messages"][0]["content"])
            reply = {"turns": [{"question": "What is it?", "answer": f"Reply {len(requests)}."}]}
            payload = json.dumps({"choices": [{"message": {"content": json.dumps(reply)}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    records = [json.loads(line) for line in ISIC.read_text().splitlines()[:2]]
    metadata = tmp_path / "two.jsonl"
    metadata.write_text("".join(json.dumps(dict(r, image=str(ISIC.parent / r["image"]))) + "\n" for r in records))
    try:
        conversations.main(["--metadata", str(metadata), "--out", str(tmp_path / "c.jsonl"),
                            "--endpoint", f"http://127.0.0.1:{server.server_port}/v1", "--api_key", "test"])
    finally:
        server.shutdown()
    assert len(requests) == 2
    assert records[0]["image_id"] in requests[0] and records[1]["image_id"] not in requests[0]
    assert records[1]["image_id"] in requests[1] and records[0]["image_id"] not in requests[1]
    built = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [b["messages"][1]["content"] for b in built] == ["Reply 1.", "Reply 2."]


def test_every_score_is_read_under_one_answer_cap():
    """Training's final evaluation, medvlm.evaluate, the dataset comparison and answer_batch share one default cap
    (they drifted to 16, 32 and 32: eval.json and the Evaluation tab scored the same model under different limits)."""
    import inspect

    from medvlm import compare, evaluate
    from medvlm.predict import answer_batch
    from medvlm.settings import EVAL_MAX_NEW_TOKENS

    caps = {TrainArguments().max_new_tokens, evaluate.parse_args(["--model", "m", "--data", "d"]).max_new_tokens,
            compare.parse_args(["--data", "d.yaml"]).max_new_tokens,
            inspect.signature(answer_batch).parameters["settings"].default.max_new_tokens}
    assert caps == {EVAL_MAX_NEW_TOKENS}


def test_two_processes_train_as_one(llava_dir, vqa_rad_image, tmp_path):
    """accelerate's multi-process launcher (torchrun) on CPU: gloo synchronises the gradients of two processes that
    read different batches, so both end with identical weights; the adapter and the evaluation come once."""
    other = str(vqa_rad_image.parent / "synpic29265.jpg")
    rows = [{"image": str(vqa_rad_image) if k % 2 else other, "question": f"Question {k}?", "answer": "yes" if k % 2 else "no",
             "answer_type": "CLOSED", "split": "train"} for k in range(8)]
    rows += [{"image": str(vqa_rad_image), "question": "Is it normal?", "answer": "no", "answer_type": "CLOSED", "split": "test"}]
    data = tmp_path / "vqa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "train.vlm", "--model", str(llava_dir), "--data", str(data),
         "--output_dir", str(run), "--batch_size", "1", "--pack_size", "1", "--max_steps", "3", "--eval_batch_size", "2",
         "--max_new_tokens", "4"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("2 processes: trainable weights identical on every process") == 1
    assert done.stdout.count("adapter saved to") == 1 and (run / "adapter" / "adapter_config.json").is_file()
    assert done.stdout.count('"questions": 1') == 1  # the final evaluation ran once, on the main process
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 2  # the question, and once with no image
    assert json.loads((run / "checkpoint" / "progress.json").read_text())["step"] == 3
