"""An answer and how sure the model was of it: the probability of "yes" against "no" at the answer's first token.

In-process models give it from their logits (medvlm.predict, medvlm.chat); a served model from the logprobs its
server returns (medvlm.remote), where it returns them. Shown beside each yes/no answer in Chat and Compare
("no (p = 0.93)") and scored for calibration (medvlm.grounding).
"""
import math
from typing import TYPE_CHECKING

from medvlm.metrics import yes_no

if TYPE_CHECKING:  # torch is imported where logits are read, so medvlm.remote (a served model) never loads it
    import torch


class Answer(str):
    """An answer's text, carrying p_yes: the model's probability of "yes" against "no" at the answer's first token
    (None where it was not measured: sampling, a served model without logprobs)."""

    p_yes: float | None = None

    def __new__(cls, text: str, p_yes: float | None = None):
        answer = super().__new__(cls, text)
        answer.p_yes = p_yes
        return answer


YES_WORDS, NO_WORDS = ("yes", "Yes", " yes", " Yes", "YES"), ("no", "No", " no", " No", "NO")


def yes_no_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """The token ids that begin an answer "yes" or "no" (in the spellings a model writes first), each variant that
    is a single token; cached on the tokenizer."""
    cached = getattr(tokenizer, "_medvlm_yes_no_ids", None)
    if cached is None:
        def ids(words):
            found = {tuple(tokenizer.encode(w, add_special_tokens=False)) for w in words}
            return sorted({t[0] for t in found if len(t) == 1})
        cached = (ids(YES_WORDS), ids(NO_WORDS))
        tokenizer._medvlm_yes_no_ids = cached
    return cached


def yes_probability(logits: "torch.Tensor", tokenizer) -> float | None:
    """P(yes) / (P(yes) + P(no)) from one position's logits over the vocabulary, summing each word's spellings;
    None when the tokenizer has no single-token yes or no."""
    import torch

    yes_ids, no_ids = yes_no_token_ids(tokenizer)
    if not yes_ids or not no_ids:
        return None
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    yes, no = torch.logsumexp(log_probs[yes_ids], 0), torch.logsumexp(log_probs[no_ids], 0)
    return round(float(torch.sigmoid(yes - no)), 4)


def p_yes_from_logprobs(logprobs) -> float | None:
    """P(yes) / (P(yes) + P(no)) from the first token's top_logprobs of an OpenAI chat answer (every spelling of each
    word summed; a word not among the top ones counts as 0); None when neither is there or the field is absent."""
    try:
        top = logprobs["content"][0]["top_logprobs"]
        mass = {"yes": 0.0, "no": 0.0}
        for entry in top:
            word = str(entry["token"]).strip().lower()
            if word in mass:
                mass[word] += math.exp(float(entry["logprob"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    total = mass["yes"] + mass["no"]
    return round(mass["yes"] / total, 4) if total > 0 else None


def with_confidence(answer: str) -> str:
    """The answer with the model's probability of the yes or no it said ("no (p = 0.93)"); unchanged when it says
    neither or carries no p_yes (a served model without logprobs)."""
    p_yes, said = getattr(answer, "p_yes", None), yes_no(answer)
    if p_yes is None or said is None:
        return str(answer)
    return f"{answer} (p = {p_yes if said == 'yes' else 1 - p_yes:.2f})"
