"""Strict automatic VQA metrics. Scoring only: generation lives in medvlm.chat and medvlm.evaluate.

Closed questions: a yes/no reference is matched by whole words after normalisation. "No" inside "normal" is not a
"no"; an answer that says both yes and no, or neither, is wrong. Any other closed reference ("left", "MRI") must
appear as a whole-word phrase. Every question stays in the denominator.
Open questions: token recall / precision / F1 and exact match, after normalisation (lower case, no punctuation,
no articles, number words as digits).
"""
import re
import string
from collections import Counter
from dataclasses import dataclass

ARTICLES = {"a", "an", "the"}
NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
}
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_tokens(text: str) -> list[str]:
    """Lower case, punctuation to spaces, articles dropped, number words as digits."""
    words = _PUNCTUATION.sub(" ", (text or "").lower()).split()
    return [NUMBER_WORDS.get(word, word) for word in words if word not in ARTICLES]


def yes_no(text: str) -> str | None:
    """'yes' or 'no' when the text says exactly one of them as a whole word; None when it says both or neither."""
    words = set(normalize_tokens(text))
    said = {"yes", "no"} & words
    return said.pop() if len(said) == 1 else None


def closed_correct(prediction: str, reference: str) -> bool:
    expected = yes_no(reference)
    if expected is not None and normalize_tokens(reference) == [expected]:
        return yes_no(prediction) == expected
    needle, haystack = normalize_tokens(reference), normalize_tokens(prediction)
    if not needle:
        return False
    return any(haystack[i : i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


@dataclass(frozen=True)
class OpenScore:
    recall: float
    precision: float
    f1: float
    exact: float


def open_score(prediction: str, reference: str) -> OpenScore:
    predicted, expected = normalize_tokens(prediction), normalize_tokens(reference)
    common = sum((Counter(predicted) & Counter(expected)).values())
    recall = common / len(expected) if expected else 0.0
    precision = common / len(predicted) if predicted else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return OpenScore(recall, precision, f1, float(bool(expected) and predicted == expected))


def score(records) -> dict:
    """Aggregate over records with "prediction", "answer" and "answer_type" (CLOSED/OPEN). Percentages."""
    closed = [closed_correct(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "CLOSED"]
    opened = [open_score(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "OPEN"]

    def mean(values):
        return round(100 * sum(values) / len(values), 2) if values else None

    # Yes/no questions, each answer class weighted alike: always "yes" (or always "no") scores 50 on any mix.
    per_class = []
    for word in ("yes", "no"):
        hits = [closed_correct(r["prediction"], r["answer"]) for r in records
                if r["answer_type"].upper() == "CLOSED" and normalize_tokens(r["answer"]) == [word]]
        per_class.append(mean(hits))
    return {
        "closed_n": len(closed),
        "closed_accuracy": mean(closed),
        "yes_no_balanced_accuracy": round(sum(per_class) / 2, 2) if None not in per_class else None,
        "open_n": len(opened),
        "open_recall": mean([s.recall for s in opened]),
        "open_precision": mean([s.precision for s in opened]),
        "open_f1": mean([s.f1 for s in opened]),
        "open_exact_match": mean([s.exact for s in opened]),
    }


def majority_baseline(train_records, eval_records) -> dict:
    """Scores of always giving the training set's most common answer per question type (CLOSED / OPEN)."""
    most_common = {}
    for answer_type in ("CLOSED", "OPEN"):
        answers = Counter(" ".join(normalize_tokens(r["answer"])) for r in train_records if r["answer_type"].upper() == answer_type)
        most_common[answer_type] = answers.most_common(1)[0][0] if answers else ""
    predicted = [dict(r, prediction=most_common[r["answer_type"].upper()]) for r in eval_records]
    return score(predicted) | {"answers": most_common}


# --- published, more lenient scorers: reproduced so reported numbers can be compared, and their optimism seen ------


def llava_med_closed_hit(prediction: str, reference: str) -> bool | None:
    """LLaVA-Med run_eval.py's closed rule, lower-cased substrings: with "yes" or "no" anywhere in the prediction
    ("normal" holds a "no"), a hit when the reference is in it, and otherwise None: before its fix #35 the script
    appended nothing, so the question left the denominator. With neither substring, a miss."""
    prediction, reference = (prediction or "").lower().strip(), (reference or "").lower().strip()
    if "yes" in prediction or "no" in prediction:
        return True if reference in prediction else None
    return False


def llava_med_open_recall(prediction: str, reference: str) -> float:
    """run_eval.py's open figure, the recall of its calculate_f1score: reference words found, each counted as often
    as the prediction says it, over that plus the reference words missing (on our normalised tokens)."""
    predicted, expected = Counter(normalize_tokens(prediction)), Counter(normalize_tokens(reference))
    if not predicted or not expected:
        return 0.0
    found = sum(predicted[w] for w in expected if w in predicted)
    missing = sum(n for w, n in expected.items() if w not in predicted)
    return found / (found + missing)


def llava_med_score(records) -> dict:
    """LLaVA-Med's run_eval.py (labelled "LLaVA-Med-compatible" wherever shown), in its two versions:
    closed_accuracy: before its fix #35, a wrong closed answer holding "yes" or "no" leaves the denominator
    (closed_counted says how many stayed); closed_accuracy_all: after #35, every closed question counts.
    open_recall: its open figure, token recall (llava_med_open_recall). Percentages."""
    hits = [llava_med_closed_hit(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "CLOSED"]
    counted = [hit for hit in hits if hit is not None]
    opened = [llava_med_open_recall(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() != "CLOSED"]
    return {"closed_counted": len(counted), "closed_accuracy": _percent(counted),
            "closed_accuracy_all": _percent([bool(hit) for hit in hits]), "open_recall": _percent(opened)}


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure over normalised tokens (longest common subsequence)."""
    a, b = normalize_tokens(prediction), normalize_tokens(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def lenient_correct(prediction: str, reference: str) -> bool:
    """The original notebook's rule: ROUGE-L >= 0.3, or the reference's yes/no word found in the prediction
    (as a substring, so "normal" contains a "no")."""
    word = (reference or "").lower().strip()
    if word in ("yes", "no") and word in (prediction or "").lower():
        return True
    return rouge_l(prediction, reference) >= 0.3


def lenient_score(records) -> dict:
    closed = [lenient_correct(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "CLOSED"]
    opened = [lenient_correct(r["prediction"], r["answer"]) for r in records if r["answer_type"].upper() == "OPEN"]
    return {"closed_accuracy": _percent(closed), "open_accuracy": _percent(opened)}


def _percent(values) -> float | None:
    return round(100 * sum(values) / len(values), 2) if values else None
