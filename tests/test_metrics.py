"""The strict metrics on hand-made cases."""
import pytest

from medvlm.metrics import closed_correct, normalize_tokens, open_score, score, yes_no


@pytest.mark.parametrize(
    "prediction, reference, correct",
    [
        ("Yes", "yes", True),
        ("Yes, the lungs are clear.", "Yes", True),
        ("No.", "no", True),
        ("The scan is normal.", "no", False),  # "no" inside "normal" is not a no
        ("There is no abnormality, yes.", "yes", False),  # both: wrong
        ("It is hard to say.", "no", False),  # neither: wrong
        ("Nothing abnormal", "no", False),
        ("The lesion is on the left side.", "left", True),
        ("The lesion is on the leftmost side.", "left", False),  # whole words only
        ("This is an MRI.", "MRI", True),
        ("white matter", "White Matter", True),
        ("", "yes", False),
    ],
)
def test_closed(prediction, reference, correct):
    assert closed_correct(prediction, reference) is correct


def test_normalisation():
    assert normalize_tokens("The Two nodules, in an X-ray!") == ["2", "nodules", "in", "x", "ray"]
    assert yes_no("NO!") == "no" and yes_no("yes and no") is None and yes_no("normal") is None


def test_open_scores():
    s = open_score("A mass in the right upper lobe", "right upper lobe")
    assert s.recall == 1.0 and s.precision == pytest.approx(3 / 5) and s.f1 == pytest.approx(0.75) and s.exact == 0.0
    assert open_score("Right upper lobe.", "right upper lobe").exact == 1.0
    assert open_score("three", "3").exact == 1.0
    assert open_score("", "axial").f1 == 0.0 and open_score("anything", "").recall == 0.0


def test_aggregate_keeps_every_question_in_the_denominator():
    records = [
        {"prediction": "yes", "answer": "yes", "answer_type": "CLOSED"},
        {"prediction": "normal", "answer": "no", "answer_type": "CLOSED"},
        {"prediction": "", "answer": "yes", "answer_type": "CLOSED"},
        {"prediction": "yes", "answer": "no", "answer_type": "CLOSED"},
        {"prediction": "axial plane", "answer": "axial", "answer_type": "OPEN"},
        {"prediction": "brain", "answer": "liver", "answer_type": "OPEN"},
    ]
    result = score(records)
    assert result["closed_n"] == 4 and result["closed_accuracy"] == 25.0
    assert result["open_n"] == 2 and result["open_recall"] == 50.0 and result["open_exact_match"] == 0.0
    assert result["open_precision"] == 25.0


def test_majority_baseline():
    from medvlm.metrics import majority_baseline

    train = [{"answer": "No", "answer_type": "CLOSED"}, {"answer": "no", "answer_type": "CLOSED"},
             {"answer": "yes", "answer_type": "CLOSED"}, {"answer": "Axial", "answer_type": "OPEN"}]
    test = [{"answer": "no", "answer_type": "CLOSED"}, {"answer": "yes", "answer_type": "CLOSED"},
            {"answer": "axial", "answer_type": "OPEN"}, {"answer": "brain", "answer_type": "OPEN"}]
    result = majority_baseline(train, test)
    assert result["answers"] == {"CLOSED": "no", "OPEN": "axial"}
    assert result["closed_accuracy"] == 50.0 and result["open_exact_match"] == 50.0


def test_llava_med_compatible_rules_and_their_optimism():
    from medvlm.metrics import llava_med_score

    records = [
        {"prediction": "Yes, there is.", "answer": "yes", "answer_type": "CLOSED"},      # hit
        {"prediction": "The scan is normal", "answer": "no", "answer_type": "CLOSED"},   # "no" inside "normal": hit
        {"prediction": "yes", "answer": "no", "answer_type": "CLOSED"},                  # wrong: dropped, not counted
        {"prediction": "a fracture", "answer": "yes", "answer_type": "CLOSED"},          # neither word: a miss
        {"prediction": "the left lung base", "answer": "left lung", "answer_type": "OPEN"},
        {"prediction": "liver", "answer": "spleen", "answer_type": "OPEN"},
    ]
    result = llava_med_score(records)
    # before #35: the dropped answer is out of the denominator (2 of 3); after: 2 of 4. Open recall: 1 and 0.
    assert result == {"closed_counted": 3, "closed_accuracy": 66.67, "closed_accuracy_all": 50.0, "open_recall": 50.0}
    strict = score(records)
    assert strict["closed_accuracy"] == 25.0  # only the first: "normal" is not a no, and every question counts


def test_llava_med_open_recall_counts_as_its_script_does():
    from medvlm.metrics import llava_med_open_recall, open_score

    # calculate_f1score: a reference word counts as often as the prediction repeats it: (2 + 1) / (3 + 1 missing)
    assert llava_med_open_recall("left left lung", "left lung base") == 0.75
    assert open_score("left left lung", "left lung base").recall == pytest.approx(2 / 3)  # ours: each word once
    assert llava_med_open_recall("", "lung") == 0.0 and llava_med_open_recall("The Lung.", "lung") == 1.0


def test_lenient_notebook_rule():
    from medvlm.metrics import lenient_correct, rouge_l

    assert rouge_l("the mass is in the left lung", "left lung") == pytest.approx(2 * (2 / 5) * 1 / (2 / 5 + 1))
    assert lenient_correct("It looks normal", "no")  # the substring "no"
    assert lenient_correct("left upper lobe", "left lobe")  # ROUGE-L 0.8
    assert not lenient_correct("a large effusion on the right side of the chest", "pneumothorax")
    assert not lenient_correct("yes", "no")
