"""The model layer on tiny random-weight LLaVA and IDEFICS checkpoints, through the real registry and loaders."""

import pytest
import torch
from tiny_models import save_tiny_idefics, save_tiny_llava, teach

from medvlm import models
from medvlm.chat import GenerationSettings, encode_to_fit, generate_kwargs, stream_reply
from medvlm.errors import UserFacingError
from medvlm.images import load_image

QUESTION = "What is shown?"


@pytest.fixture(scope="module")
def image(vqa_rad_image):
    return load_image(vqa_rad_image)


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory, image):
    """Taught to answer QUESTION and then invent a new turn, as base LLaVA often does."""
    folder = save_tiny_llava(tmp_path_factory.mktemp("llava"))
    teach(folder, [(QUESTION, None)], image, " Yes, a fracture.\nUSER: Anything else?\nASSISTANT: No.")
    return folder


@pytest.fixture(scope="module")
def idefics_dir(tmp_path_factory, image):
    folder = save_tiny_idefics(tmp_path_factory.mktemp("idefics"))
    teach(folder, [(QUESTION, None)], image, " It is the liver.<end_of_utterance>\nUser: and?")
    return folder


def generated_text(loaded, image, question=QUESTION, max_new_tokens=40):
    inputs = encode_to_fit(loaded, [], question, image, max_new_tokens)
    output = loaded.model.generate(**generate_kwargs(loaded, inputs, GenerationSettings(max_new_tokens=max_new_tokens)))
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    return loaded.tokenizer.decode(new_tokens), len(new_tokens)


# --- registry ---------------------------------------------------------------------------------------------------


def test_registry_names_every_product_model():
    assert set(models.REGISTRY) == {"medvlm-tiny", "llava-1.5-7b", "midefics", "medgemma-4b", "smolvlm-256m", "smolvlm-500m",
                                    "qwen2.5-vl-3b", "lingshu-7b"}
    assert models.REGISTRY["llava-1.5-7b"].source == "llava-hf/llava-1.5-7b-hf"
    midefics = models.REGISTRY["midefics"]
    assert midefics.source == "HuggingFaceM4/idefics-9b-instruct" and midefics.adapter == "WinterSchool/Midefics"
    # --adapter none: the base a registered adapter was tuned from (IDEFICS-9b-instruct; MedVLM-Tiny's bare base)
    assert models.resolve("midefics", adapter="none").adapter is None and models.resolve("midefics").adapter == "WinterSchool/Midefics"
    assert models.resolve("midefics", adapter="mine/lora").adapter == "mine/lora"
    assert models.resolve("openai:http://h/v1", adapter="none", served_model="m").adapter is None


def test_local_folder_family_read_from_config(llava_dir, idefics_dir):
    assert models.resolve(str(llava_dir)).family == "llava"
    assert models.resolve(str(idefics_dir)).family == "idefics"


def test_uncached_hub_model_names_what_is_missing():
    reason = models.unavailable_reason(models.REGISTRY["llava-1.5-7b"], device="cpu")
    assert "llava-hf/llava-1.5-7b-hf is not in the local Hugging Face cache" in reason
    assert "--model PATH" in reason and "HF_HOME" in reason
    with pytest.raises(UserFacingError, match="not in the local Hugging Face cache"):
        models.load(models.REGISTRY["midefics"], device="cpu")


def test_too_big_for_this_machine_says_so(llava_dir):
    spec = models.ModelSpec(name="big", family="llava", source=str(llava_dir), params_billion=70)
    reason = models.unavailable_reason(spec, device="cpu")
    assert "needs about" in reason and "CUDA GPU" in reason


@pytest.mark.parametrize(
    "name, message",
    [("./no/such/folder", "No model folder"), ("someone/not-cached", "not in the local Hugging Face cache")],
)
def test_unknown_model_names(name, message):
    with pytest.raises(UserFacingError, match=message):
        models.resolve(name)


def test_missing_adapter_is_reported(llava_dir, tmp_path):
    spec = models.resolve(str(llava_dir), adapter=str(tmp_path / "nope"))
    assert "No adapter folder" in models.unavailable_reason(spec, device="cpu")


# --- LLaVA ------------------------------------------------------------------------------------------------------


def test_llava_prompt_format(llava_dir):
    family = models.load(models.resolve(str(llava_dir)), device="cpu").family
    assert family.prompt([(QUESTION, None)], True, "</s>") == f"USER: <image>\n{QUESTION}\nASSISTANT:"
    assert family.prompt([("q1", "a1"), ("q2", None)], True, "</s>") == "USER: <image>\nq1\nASSISTANT: a1</s>USER: q2\nASSISTANT:"
    assert family.prompt([("q", None)], False, "</s>") == "USER: q\nASSISTANT:"


def test_llava_processor_expands_image_tokens(llava_dir, image):
    loaded = models.load(models.resolve(str(llava_dir)), device="cpu")
    inputs = encode_to_fit(loaded, [], QUESTION, image, 8)
    assert (inputs["input_ids"] == loaded.model.config.image_token_id).sum() == 16
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)


def test_llava_stops_before_an_invented_turn(llava_dir, image):
    loaded = models.load(models.resolve(str(llava_dir)), device="cpu")
    text, count = generated_text(loaded, image)
    assert text == " Yes, a fracture.\nUSER:" and count < 40  # generation itself stopped there
    answer = list(stream_reply(loaded, [], QUESTION, image))
    assert answer[-1] == "Yes, a fracture."  # no prompt echo, first letter intact, no "USER:"
    assert not any("US" in partial for partial in answer)  # the stop string never flashes while streaming


def test_llava_text_only_question(llava_dir):
    loaded = models.load(models.resolve(str(llava_dir)), device="cpu")
    inputs = encode_to_fit(loaded, [], "Is a pneumothorax dangerous?", None, 8)
    assert "pixel_values" not in inputs
    assert isinstance(list(stream_reply(loaded, [], "Is a pneumothorax dangerous?", None, GenerationSettings(8)))[-1], str)


def test_llava_4bit_load_on_cpu(llava_dir, image):
    import bitsandbytes as bnb

    loaded = models.load(models.resolve(str(llava_dir)), device="cpu", quantize="nf4")
    q_proj = loaded.model.model.language_model.layers[0].self_attn.q_proj
    assert isinstance(q_proj, bnb.nn.Linear4bit) and q_proj.weight.quant_type == "nf4"
    text, _ = generated_text(loaded, image, max_new_tokens=6)
    assert isinstance(text, str)


def test_quantize_auto_is_nf4_only_for_big_models_on_cuda():
    from medvlm.models.loading import resolve_quantize

    llava, tiny = models.REGISTRY["llava-1.5-7b"], models.REGISTRY["medvlm-tiny"]
    assert resolve_quantize(llava, "cuda", "auto") == "nf4"
    assert resolve_quantize(llava, "cpu", "auto") is None
    assert resolve_quantize(tiny, "cuda", "auto") is None
    assert resolve_quantize(llava, "cuda", "none") is None
    with pytest.raises(UserFacingError, match="--quantize must be one of"):
        resolve_quantize(llava, "cuda", "int3")


def test_adapter_save_then_load_changes_and_reproduces_logits(llava_dir, image, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = models.load(models.resolve(str(llava_dir)), device="cpu")
    inputs = encode_to_fit(base, [], QUESTION, image, 4)
    with torch.no_grad():
        base_logits = base.model(**inputs).logits
    peft_model = get_peft_model(base.model, LoraConfig(r=4, target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # LoRA B starts at zero; give it weight so it matters
    with torch.no_grad():
        tuned_logits = peft_model(**inputs).logits
    peft_model.save_pretrained(tmp_path / "adapter")

    loaded = models.load(models.resolve(str(llava_dir), adapter=str(tmp_path / "adapter")), device="cpu")
    with torch.no_grad():
        reloaded_logits = loaded.model(**inputs).logits
    assert not torch.allclose(base_logits, tuned_logits)
    torch.testing.assert_close(reloaded_logits, tuned_logits)


def test_broken_adapter_is_reported(llava_dir, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(UserFacingError, match="Could not load adapter"):
        models.load(models.resolve(str(llava_dir), adapter=str(tmp_path)), device="cpu")


# --- IDEFICS ----------------------------------------------------------------------------------------------------


def test_idefics_prompt_format(idefics_dir, image):
    loaded = models.load(models.resolve(str(idefics_dir)), device="cpu")
    inputs = loaded.family.encode(loaded.processor, [("q1", "a1"), ("q2", None)], image)
    assert loaded.tokenizer.decode(inputs["input_ids"][0]) == (
        "<s>User: q1<fake_token_around_image><image><fake_token_around_image><end_of_utterance>\n"
        "Assistant: a1<end_of_utterance>\nUser: q2<end_of_utterance>\nAssistant:"
    )
    assert inputs["image_attention_mask"].sum() > 0


def test_idefics_stops_at_end_of_utterance_and_bans_image_tokens(idefics_dir, image):
    loaded = models.load(models.resolve(str(idefics_dir)), device="cpu")
    text, count = generated_text(loaded, image)
    assert text == " It is the liver.<end_of_utterance>" and count < 40
    assert list(stream_reply(loaded, [], QUESTION, image))[-1] == "It is the liver."
    banned = generate_kwargs(loaded, encode_to_fit(loaded, [], QUESTION, image, 4), GenerationSettings())["bad_words_ids"]
    assert sorted(banned) == sorted([[loaded.tokenizer.convert_tokens_to_ids(t)] for t in ("<image>", "<fake_token_around_image>")])


def test_idefics_question_without_image(idefics_dir):
    loaded = models.load(models.resolve(str(idefics_dir)), device="cpu")
    inputs = loaded.family.encode(loaded.processor, [("Is a pneumothorax dangerous?", None)], None)
    assert loaded.tokenizer.decode(inputs["input_ids"][0]) == "<s>User: Is a pneumothorax dangerous?<end_of_utterance>\nAssistant:"
    assert isinstance(list(stream_reply(loaded, [], "Is a pneumothorax dangerous?", None, GenerationSettings(8)))[-1], str)


def test_idefics_4bit_load_on_cpu(idefics_dir, image):
    loaded = models.load(models.resolve(str(idefics_dir)), device="cpu", quantize="nf4")
    assert "Linear4bit" in type(loaded.model.model.layers[0].self_attn.q_proj).__name__
    assert isinstance(generated_text(loaded, image, max_new_tokens=4)[0], str)


def test_cuda_kwargs_are_nf4_double_quant_with_the_chosen_compute_dtype():
    from medvlm.models.loading import from_pretrained_kwargs

    kwargs = from_pretrained_kwargs("cuda:0", "nf4")
    config = kwargs["quantization_config"]
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.float16 and kwargs["device_map"] == {"": "cuda:0"}
    assert from_pretrained_kwargs("cuda:0", "nf4", torch.bfloat16)["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16
    assert from_pretrained_kwargs("cpu", None)["dtype"] == torch.float32


@pytest.mark.parametrize("family", ["llava", "idefics"])
def test_conversations_encoded_one_by_one_batch_as_the_processor_batches_them(family, llava_dir, idefics_dir, image):
    """medvlm.serve encodes each request while checking its context, then batches those tensors (predict.left_padded):
    they must be what the processor gives for the conversations together."""
    from medvlm.predict import left_padded

    loaded = models.load(models.resolve(str(llava_dir if family == "llava" else idefics_dir)), device="cpu")
    conversations = [([(QUESTION, None)], image), ([("Which organ is it, and is there a fracture?", "No."), ("Sure?", None)], image)]
    one_by_one = [loaded.family.encode(loaded.processor, turns, picture) for turns, picture in conversations]
    together = loaded.family.encode_batch(loaded.processor, conversations)
    padded = left_padded(one_by_one, loaded.family.generate_kwargs(loaded.processor)["pad_token_id"])
    assert set(padded) == set(together)
    for key, value in together.items():
        assert torch.equal(padded[key], value), key
