"""Pairwise votes -> a leaderboard: Bradley-Terry scores with bootstrap intervals, ranks, win rates, "both bad" shares.

A battle is two models' answers to one question, voted "a" (A better), "b" (B better), "tie" or "both_bad". As
FastChat's elo_analysis.py: the Bradley-Terry model P(i beats j) = 1 / (1 + 10 ** ((s_j - s_i) / 400)) is fitted by
logistic regression (scikit-learn) on votes aggregated per pair, a tie or "both bad" counting as half a win and half a
loss; scores sit on the 400-point scale with the anchor model at 1000. Intervals: the fit repeated on battles drawn
with replacement (percentile bootstrap). Rank: 1 + the number of models whose lower bound is above this one's upper
bound, so models whose intervals overlap share a rank.

The fit carries a weak Gaussian prior on each score (scikit-learn's L2 penalty, C = PRIOR_C, about 400 points of
spread): a model that never lost has no finite maximum-likelihood score, and a study's first votes must not show
one as infinitely good. Against the plain maximum-likelihood fit (simulated votes, 4 models) it moved scores by at most
17 points at 20 votes per model, 6 at 50, 2 at 200 (tests/test_leaderboard.py checks under 10 at 50).
"""
import math
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

OUTCOMES = ("a", "b", "tie", "both_bad")
SCALE, BASE, ANCHOR_SCORE = 400, 10, 1000.0
PRIOR_C = 1.0  # scikit-learn's inverse L2 strength on log10-odds scores: a N(0, 1) prior, i.e. 400 points of spread
BOOTSTRAP_ROUNDS = 200


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    outcome: str  # one of OUTCOMES

    def __post_init__(self):
        if self.outcome not in OUTCOMES:
            raise ValueError(f"a battle's outcome is one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two models, not {self.model_a!r} twice")


def win_counts(battles: list[Battle]) -> dict[tuple[str, str], float]:
    """(i, j) -> i's wins over j, a tie or "both bad" counting half to each."""
    wins: dict[tuple[str, str], float] = Counter()
    for battle in battles:
        a, b = battle.model_a, battle.model_b
        if battle.outcome == "a":
            wins[a, b] += 1
        elif battle.outcome == "b":
            wins[b, a] += 1
        else:
            wins[a, b] += 0.5
            wins[b, a] += 0.5
    return wins


def bradley_terry(battles: list[Battle], anchor: str | None = None) -> dict[str, float]:
    """Each model's score (400-point scale); the anchor (default: the first model by name) at ANCHOR_SCORE."""
    from sklearn.linear_model import LogisticRegression

    models = sorted({m for b in battles for m in (b.model_a, b.model_b)})
    if len(models) < 2:
        raise ValueError("a leaderboard needs battles between at least two models")
    index = {m: k for k, m in enumerate(models)}
    wins = win_counts(battles)
    rows, outcomes, weights = [], [], []
    for (i, j), count in wins.items():
        if count:  # "i beat j" count times, written both ways round (scikit-learn wants both classes): half each
            x = np.zeros(len(models))
            x[index[i]], x[index[j]] = math.log(BASE), -math.log(BASE)
            rows += [x, -x]
            outcomes += [1, 0]
            weights += [count / 2, count / 2]
    fit = LogisticRegression(fit_intercept=False, C=PRIOR_C, tol=1e-8, max_iter=1000)
    fit.fit(np.array(rows), np.array(outcomes), sample_weight=np.array(weights))
    scores = SCALE * fit.coef_[0]
    anchor = anchor if anchor is not None else models[0]
    if anchor not in index:
        raise ValueError(f"the anchor {anchor!r} has no battles")
    shift = ANCHOR_SCORE - scores[index[anchor]]
    return {m: float(scores[index[m]] + shift) for m in models}


def bootstrap(battles: list[Battle], anchor: str | None = None, rounds: int | None = None, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Each model's 95 % percentile interval over `rounds` (default BOOTSTRAP_ROUNDS) fits on battles drawn with
    replacement. A draw that lost a model (or the anchor) is drawn again."""
    rounds = rounds or BOOTSTRAP_ROUNDS
    rng = random.Random(seed)
    models = {m for b in battles for m in (b.model_a, b.model_b)}
    anchor = anchor if anchor is not None else min(models)
    samples: dict[str, list[float]] = {m: [] for m in models}
    done = 0
    while done < rounds:
        drawn = rng.choices(battles, k=len(battles))
        if {m for b in drawn for m in (b.model_a, b.model_b)} != models:
            continue
        for model, score in bradley_terry(drawn, anchor).items():
            samples[model].append(score)
        done += 1
    return {m: (float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))) for m, s in samples.items()}


def leaderboard(battles: list[Battle], anchor: str | None = None, rounds: int | None = None, seed: int = 0) -> list[dict]:
    """One row per model, best first: rank, score and its 95 % interval, battles, wins / losses / ties, the share of
    its battles voted "both bad"."""
    scores = bradley_terry(battles, anchor)
    intervals = bootstrap(battles, anchor, rounds, seed)
    tally = {m: Counter() for m in scores}
    for b in battles:
        for model, side in ((b.model_a, "a"), (b.model_b, "b")):
            won = b.outcome == side
            lost = b.outcome in ("a", "b") and not won
            tally[model].update(battles=1, wins=won, losses=lost, ties=b.outcome == "tie", both_bad=b.outcome == "both_bad")
    rows = []
    for model, score in scores.items():
        low, high = intervals[model]
        rank = 1 + sum(intervals[other][0] > high for other in scores if other != model)
        t = tally[model]
        rows.append({"model": model, "rank": rank, "score": round(score, 1), "ci95": [round(low, 1), round(high, 1)],
                     "battles": t["battles"], "wins": t["wins"], "losses": t["losses"], "ties": t["ties"],
                     "both_bad_share": round(t["both_bad"] / t["battles"], 3)})
    return sorted(rows, key=lambda r: (r["rank"], -r["score"]))


def pair_win_rates(battles: list[Battle]) -> dict[tuple[str, str], dict]:
    """(i, j) -> i's win rate over j (ties and "both bad" half) and the number of their battles, for every pair that met."""
    wins = win_counts(battles)
    met = Counter(frozenset((b.model_a, b.model_b)) for b in battles)
    return {(i, j): {"win_rate": round(wins[i, j] / met[frozenset((i, j))], 3), "battles": met[frozenset((i, j))]}
            for pair in met for i in pair for j in pair if i != j}


def plot(rows: list[dict]) -> bytes:
    """leaderboard()'s rows as a PNG: each model's score with its 95 % interval, best at the top."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = list(reversed(rows))
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    scores = [r["score"] for r in ordered]
    errors = [[r["score"] - r["ci95"][0] for r in ordered], [r["ci95"][1] - r["score"] for r in ordered]]
    axis.errorbar(scores, range(len(ordered)), xerr=errors, fmt="o", capsize=4)
    axis.set_yticks(range(len(ordered)), [f"{r['rank']}. {r['model']}" for r in ordered])
    axis.set_xlabel("Bradley-Terry score (95 % bootstrap interval)")
    axis.set_title(f"Arena: {sum(r['battles'] for r in rows) // 2} battles")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
