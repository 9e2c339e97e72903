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


@pytest.fixture(scope="module")
def one_at_a_time(medvlm_tiny, questions):
    """The reference: one plain generate per question, greedy."""
    return answer_batch(medvlm_tiny, questions, GREEDY, batch_size=1, share_prefix=False)


def test_shared_prefix_answers_equal_one_generate_per_question(medvlm_tiny, questions, one_at_a_time):
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


def test_yes_probability_on_hand_made_logits(medvlm_tiny):
    """P(yes) against P(no) at one position, each word's spellings summed; the rest of the vocabulary does not count."""
    import math

    import torch

    from medvlm.answers import yes_no_token_ids, yes_probability

    tokenizer = medvlm_tiny.tokenizer
    yes_ids, no_ids = yes_no_token_ids(tokenizer)
    assert yes_ids and no_ids and not set(yes_ids) & set(no_ids)
    assert tokenizer.decode(yes_ids[0]).strip().lower() == "yes" and tokenizer.decode(no_ids[0]).strip().lower() == "no"
    logits = torch.full((len(tokenizer),), -5.0)
    logits[yes_ids[0]], logits[no_ids[0]] = 2.0, 0.0
    logits[1000] = 30.0  # a confident third word changes nothing: the ratio is of yes against no
    others = len(yes_ids) - 1, len(no_ids) - 1
    expected = (math.exp(2) + others[0] * math.exp(-5)) / (math.exp(2) + others[0] * math.exp(-5) + 1 + others[1] * math.exp(-5))
    assert yes_probability(logits, tokenizer) == pytest.approx(expected, abs=1e-4)
    logits[yes_ids], logits[no_ids] = 0.0, 0.0
    assert yes_probability(logits, tokenizer) == pytest.approx(len(yes_ids) / (len(yes_ids) + len(no_ids)), abs=0.01)


def test_answers_carry_the_same_p_yes_packed_or_one_by_one(medvlm_tiny, questions, one_at_a_time):
    from medvlm.answers import with_confidence
    from medvlm.metrics import yes_no

    shared = answer_batch(medvlm_tiny, questions, GREEDY, batch_size=8)
    assert [a.p_yes for a in shared] == pytest.approx([a.p_yes for a in one_at_a_time], abs=1e-3)
    said = [a for a in shared if yes_no(a) is not None]
    assert said and all(0 <= a.p_yes <= 1 for a in said)
    for a in said:  # greedy: the word said is the likelier one
        assert (a.p_yes >= 0.5) == (yes_no(a) == "yes")
        p = a.p_yes if yes_no(a) == "yes" else 1 - a.p_yes
        assert with_confidence(a) == f"{a} (p = {p:.2f})"
    assert with_confidence("glioma") == "glioma"
    assert answer_batch(medvlm_tiny, questions[:1], GenerationSettings(max_new_tokens=4, temperature=1.0))[0].p_yes is None


def test_p_yes_from_a_served_answers_logprobs():
    """OpenAI's chat logprobs: the first token's top_logprobs, spellings of each word summed; absent -> None."""
    import math

    from medvlm.answers import p_yes_from_logprobs

    top = [{"token": "No", "logprob": math.log(0.6)}, {"token": " no", "logprob": math.log(0.1)},
           {"token": "Yes", "logprob": math.log(0.2)}, {"token": "Maybe", "logprob": math.log(0.05)}]
    assert p_yes_from_logprobs({"content": [{"token": "No", "logprob": math.log(0.6), "top_logprobs": top}]}) == pytest.approx(2 / 9, abs=1e-4)
    assert p_yes_from_logprobs({"content": [{"token": "x", "top_logprobs": [{"token": "glioma", "logprob": -0.1}]}]}) is None
    assert p_yes_from_logprobs(None) is None and p_yes_from_logprobs({"content": []}) is None
