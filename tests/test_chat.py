"""The chat core: question checks, fitting a conversation into the context, streaming, and stop-string hold-back."""
import pytest
from tiny_models import save_tiny_llava

from medvlm import models
from medvlm.chat import GenerationSettings, check_question, encode_to_fit, final_answer, stream_reply, visible_prefix
from medvlm.errors import UserFacingError
from medvlm.settings import MAX_QUESTION_CHARS

CONTEXT = 96


@pytest.fixture(scope="module")
def short_context_llava(tmp_path_factory):
    folder = save_tiny_llava(tmp_path_factory.mktemp("llava-short"), max_positions=CONTEXT)
    return models.load(models.resolve(str(folder)), device="cpu")


@pytest.mark.parametrize("question", ["", "   \n\t  ", None])
def test_empty_question(question):
    with pytest.raises(UserFacingError, match="Type a question first"):
        check_question(question)


def test_huge_question_refused_before_tokenising():
    with pytest.raises(UserFacingError, match=f"the limit is {MAX_QUESTION_CHARS:,}"):
        check_question("why " * MAX_QUESTION_CHARS)


def test_question_over_the_context(short_context_llava):
    with pytest.raises(UserFacingError, match=f"its context is {CONTEXT} tokens") as error:
        list(stream_reply(short_context_llava, [], "lung " * 200, None, GenerationSettings(max_new_tokens=16)))
    assert "\n" not in str(error.value)


def test_long_history_drops_oldest_turns_and_keeps_the_image(short_context_llava, vqa_rad_image):
    from medvlm.images import load_image

    image = load_image(vqa_rad_image)
    history = [(f"question number {i}?", f"answer number {i}.") for i in range(12)]
    inputs = encode_to_fit(short_context_llava, history, "And now?", image, 16)
    text = short_context_llava.tokenizer.decode(inputs["input_ids"][0])
    assert inputs["input_ids"].shape[1] + 16 <= CONTEXT
    assert "answer number 11." in text and "question number 0?" not in text
    assert text.startswith("USER: <image>") and "pixel_values" in inputs


@pytest.mark.parametrize("settings", [GenerationSettings(max_new_tokens=0), GenerationSettings(temperature=-1)])
def test_bad_generation_settings(settings):
    with pytest.raises(UserFacingError):
        settings.check()


def test_stop_string_hold_back():
    stops = ("USER:",)
    assert visible_prefix("Yes, a fracture.\nUS", stops) == "Yes, a fracture."
    assert visible_prefix("Yes, a fracture.\nUSER: more", stops) == "Yes, a fracture."
    assert visible_prefix("USA", stops) == "USA"
    assert final_answer("  It is normal.\nUSER: ok\nASSISTANT: fine", ("USER:", "ASSISTANT:")) == "It is normal."


def test_sampling_follows_temperature(short_context_llava):
    from medvlm.chat import generate_kwargs

    inputs = encode_to_fit(short_context_llava, [], "q", None, 4)
    greedy = generate_kwargs(short_context_llava, inputs, GenerationSettings(temperature=0))
    sampled = generate_kwargs(short_context_llava, inputs, GenerationSettings(temperature=0.7))
    assert greedy["do_sample"] is False and sampled["do_sample"] is True and sampled["temperature"] == 0.7


def test_reader_leaving_early_stops_generation(short_context_llava):
    stream = stream_reply(short_context_llava, [], "lung", None, GenerationSettings(max_new_tokens=64))
    next(stream)
    stream.close()  # joins the worker: returns only because the cancel criterion fired
