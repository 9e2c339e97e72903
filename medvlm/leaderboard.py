"""Pairwise votes -> a leaderboard: Bradley-Terry scores with bootstrap intervals, ranks, win rates, "both bad" shares.

A battle is two models' answers to one question, voted "a" (A better), "b" (B better), "tie" or "both_bad". As
FastChat's elo_analysis.py: the Bradley-Terry model P(i beats j) = 1 / (1 + 10 ** ((s_j - s_i) / 400)) is fitted by
maximum likelihood (scipy's L-BFGS-B) on votes aggregated per pair, a tie or "both bad" counting as half a win and half
a loss; scores sit on the 400-point scale with the anchor model at 1000. Intervals: the fit repeated on battles drawn
with replacement (percentile bootstrap). Rank: 1 + the number of models whose lower bound is above this one's upper
bound, so models whose intervals overlap share a rank.

The fit carries a weak Gaussian prior on each score (variance PRIOR_C in log10-odds, about 400 points of
spread): a model that never lost has no finite maximum-likelihood score, and a study's first votes must not show
one as infinitely good. Against the plain maximum-likelihood fit (simulated votes, 4 models) it moved scores by at most
17 points at 20 votes per model, 6 at 50, 2 at 200 (tests/test_leaderboard.py checks under 10 at 50).
"""
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

OUTCOMES = ("a", "b", "tie", "both_bad")
SCALE, BASE, ANCHOR_SCORE = 400, 10, 1000.0
PRIOR_C = 1.0  # the prior's variance on log10-odds scores: N(0, 1), i.e. 400 points of spread
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


def _fit(wins: np.ndarray) -> np.ndarray:
    """Bradley-Terry scores (400-point scale, not yet anchored) for a stack of win matrices: wins[r, i, j] is how often
    i beat j in round r -> scores[r, i]. Maximum likelihood under the PRIOR_C Gaussian prior, by scipy's L-BFGS-B.

    All rounds go to the optimiser at once as one problem: they share no parameter, so the joint minimum is every
    round's own minimum (tests check it against fitting each alone), and a bootstrap of 500 rounds costs about as
    much as a few single fits instead of 500 of them."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    rounds, n, _ = wins.shape
    r, i, j = np.nonzero(wins)
    count, winner, loser = wins[r, i, j], r * n + i, r * n + j  # flat indices into the rounds x models scores

    def loss(s):
        margin = math.log(BASE) * (s[winner] - s[loser])  # log-odds that the winner wins
        slope = -count * expit(-margin) * math.log(BASE)
        gradient = np.bincount(winner, slope, rounds * n) - np.bincount(loser, slope, rounds * n)
        return -(count * log_expit(margin)).sum() + s @ s / (2 * PRIOR_C), gradient + s / PRIOR_C

    fit = minimize(loss, np.zeros(rounds * n), jac=True, method="L-BFGS-B", tol=1e-12)
    return SCALE * fit.x.reshape(rounds, n)


def _anchored(scores: np.ndarray, models: list[str], anchor: str | None) -> np.ndarray:
    anchor = anchor if anchor is not None else models[0]
    if anchor not in models:
        raise ValueError(f"the anchor {anchor!r} has no battles")
    return scores - scores[:, [models.index(anchor)]] + ANCHOR_SCORE


def _models(battles: list[Battle]) -> list[str]:
    models = sorted({m for b in battles for m in (b.model_a, b.model_b)})
    if len(models) < 2:
        raise ValueError("a leaderboard needs battles between at least two models")
    return models


def bradley_terry(battles: list[Battle], anchor: str | None = None) -> dict[str, float]:
    """Each model's score (400-point scale); the anchor (default: the first model by name) at ANCHOR_SCORE."""
    models = _models(battles)
    wins = np.zeros((1, len(models), len(models)))
    for (i, j), count in win_counts(battles).items():
        wins[0, models.index(i), models.index(j)] = count
    scores = _anchored(_fit(wins), models, anchor)[0]
    return {m: float(scores[k]) for k, m in enumerate(models)}


def bootstrap(battles: list[Battle], anchor: str | None = None, rounds: int | None = None, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Each model's 95 % percentile interval over `rounds` (default BOOTSTRAP_ROUNDS) fits on battles drawn with
    replacement. A draw that lost a model is drawn again.

    Drawing n battles with replacement is drawing how many of each kind (same two models, same sides, same outcome)
    from a multinomial: that is how the rounds are drawn, so a round costs the number of kinds, not of battles."""
    rounds = rounds or BOOTSTRAP_ROUNDS
    models = _models(battles)
    n = len(models)
    kinds = Counter((models.index(b.model_a), models.index(b.model_b), b.outcome) for b in battles)
    adds = np.zeros((len(kinds), n, n))  # what one battle of each kind adds to the win matrix
    for k, (a, b, outcome) in enumerate(kinds):
        if outcome == "a":
            adds[k, a, b] = 1
        elif outcome == "b":
            adds[k, b, a] = 1
        else:
            adds[k, a, b] = adds[k, b, a] = 0.5
    share = np.array(list(kinds.values())) / len(battles)
    rng = np.random.default_rng(seed)
    wins = np.zeros((0, n, n))
    while len(wins) < rounds:
        drawn = np.einsum("rk,kij->rij", rng.multinomial(len(battles), share, size=rounds - len(wins)), adds)
        wins = np.concatenate([wins, drawn[((drawn.sum(axis=1) + drawn.sum(axis=2)) > 0).all(axis=1)]])
    scores = _anchored(_fit(wins), models, anchor)
    low, high = np.percentile(scores, [2.5, 97.5], axis=0)
    return {m: (float(low[k]), float(high[k])) for k, m in enumerate(models)}


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
