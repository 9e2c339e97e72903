"""Batched evaluation answers: questions about one image decoded together behind one shared prefix give the same
greedy answers as one model.generate per question, in the caller's order."""
import pytest

from medvlm.chat import GenerationSettings
from medvlm.images import load_image
from medvlm.models.families import FAMILIES
from medvlm.predict import answer_batch

GREEDY = GenerationSettings(max_new_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def questions(vqa_rad_image):
    """Two images, questions interleaved (grouping must restore the order), one asked twice, a fresh PIL object
    per question (as evaluation loads them), one image with a single question."""
    head, chest = load_image(vqa_rad_image), vqa_rad_image.parent / "synpic29265.jpg"
    asked = [
        (head, "Is there an infarct?"), (load_image(chest), "Which organ is shown?"), (head.copy(), "Which plane is this?"),
        (load_image(chest), "Is the heart enlarged?"), (head.copy(), "Is there an infarct?"),
        (head.copy(), "Is this a CT or an MRI? Describe what you see in one sentence."),
        (load_image(vqa_rad_image.parent / "synpic27646.jpg"), "Is this normal?"),
    ]
    return [(image, FAMILIES["fast_vlm"].ask(q, short_answer=True)) for image, q in asked]


def test_shared_prefix_answers_equal_one_generate_per_question(medvlm_tiny, questions):
    one_at_a_time = answer_batch(medvlm_tiny, questions, GREEDY, batch_size=1, share_prefix=False)
    counted = []
    shared = answer_batch(medvlm_tiny, questions, GREEDY, batch_size=4, on_batch=counted.append)
    assert shared == one_at_a_time
    assert sum(counted) == len(questions)
    assert shared[0] == shared[4]  # the same question about the same image
    # All three images in one decode batch: rows whose answers are done leave it while the long answer goes on.
    assert answer_batch(medvlm_tiny, questions, GREEDY, batch_size=8) == one_at_a_time
    lengths = [len(medvlm_tiny.tokenizer(a, add_special_tokens=False).input_ids) for a in one_at_a_time]
    longest_per_image = {max(lengths[i] for i in row) for row in ((0, 2, 4, 5), (1, 3), (6,))}
    assert len(longest_per_image) > 1  # so some row did finish while another still decoded
    assert all(answer and "<|im_end|>" not in answer for answer in shared)


def test_max_new_tokens_caps_every_branch(medvlm_tiny, questions):
    short = GenerationSettings(max_new_tokens=2, temperature=0.0)
    capped = answer_batch(medvlm_tiny, questions, short, batch_size=8)
    assert capped == answer_batch(medvlm_tiny, questions, short, batch_size=1, share_prefix=False)
    assert all(len(medvlm_tiny.tokenizer(a, add_special_tokens=False).input_ids) <= 2 for a in capped)


def test_text_only_questions_use_generate(medvlm_tiny):
    answers = answer_batch(medvlm_tiny, [(None, "What does MRI stand for?"), (None, "Name a lung disease.")], GREEDY)
    assert len(answers) == 2 and all(answers)
