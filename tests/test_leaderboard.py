"""medvlm.leaderboard: the Bradley-Terry fit against an independent maximum-likelihood fit and against known strengths,
ties as half, the anchor, bootstrap intervals and the rank rule."""
import math
import random

import numpy as np
import pytest

from medvlm import leaderboard
from medvlm.leaderboard import Battle

TRUTH = {"llava": 1000, "midefics": 1100, "medgemma": 1250, "lingshu": 1260}


def simulated(n: int, seed: int = 0, tie_share: float = 0.1, truth=TRUTH) -> list[Battle]:
    """Battles between random pairs, won as the Bradley-Terry model with `truth`'s scores says; some ties, some "both bad"."""
    rng, names, battles = random.Random(seed), sorted(truth), []
    for _ in range(n):
        a, b = rng.sample(names, 2)
        if rng.random() < tie_share:
            battles.append(Battle(a, b, rng.choice(["tie", "both_bad"])))
        else:
            p_a = 1 / (1 + 10 ** ((truth[b] - truth[a]) / 400))
            battles.append(Battle(a, b, "a" if rng.random() < p_a else "b"))
    return battles


def minorization_maximization(battles: list[Battle], anchor: str, rounds: int = 5000) -> dict[str, float]:
    """Hunter's (2004) MM iterations for the Bradley-Terry maximum-likelihood strengths, ties as half a win each:
    a fit that shares no code with the one tested."""
    names = sorted({m for b in battles for m in (b.model_a, b.model_b)})
    wins = {m: 0.0 for m in names}
    games = {}
    for b in battles:
        pair = tuple(sorted((b.model_a, b.model_b)))
        games[pair] = games.get(pair, 0) + 1
        if b.outcome in ("a", "b"):
            wins[b.model_a if b.outcome == "a" else b.model_b] += 1
        else:
            wins[b.model_a] += 0.5
            wins[b.model_b] += 0.5
    strength = {m: 1.0 for m in names}
    for _ in range(rounds):
        for m in names:
            denominator = sum(n / (strength[m] + strength[o]) for (x, y), n in games.items() if m in (x, y) for o in [y if x == m else x])
            strength[m] = wins[m] / denominator
    return {m: 1000 + 400 * math.log10(strength[m] / strength[anchor]) for m in names}


def test_the_fit_is_the_bradley_terry_maximum_likelihood(monkeypatch):
    battles = simulated(300)
    monkeypatch.setattr(leaderboard, "PRIOR_C", 1e6)  # the prior off: the plain maximum-likelihood fit
    ours = leaderboard.bradley_terry(battles, anchor="llava")
    reference = minorization_maximization(battles, anchor="llava")
    assert ours["llava"] == 1000
    assert all(abs(ours[m] - reference[m]) < 0.5 for m in TRUTH), (ours, reference)


def test_scores_recover_known_strengths_and_intervals_cover_them():
    battles = simulated(2000, seed=1, tie_share=0)  # drawn from the model itself (ties drawn apart from strength are not)
    scores = leaderboard.bradley_terry(battles, anchor="llava")
    assert all(abs(scores[m] - TRUTH[m]) < 40 for m in TRUTH), scores
    rows = {r["model"]: r for r in leaderboard.leaderboard(battles, anchor="llava", rounds=200)}
    assert all(r["ci95"][0] <= TRUTH[m] <= r["ci95"][1] for m, r in rows.items() if m != "llava"), rows
    assert rows["llava"]["ci95"] == [1000.0, 1000.0]  # the anchor is the fixed point the others are measured from
    # Rank: 1 + the models whose lower bound is above this one's upper bound. medgemma and lingshu (10 points apart)
    # overlap and share rank 1; midefics is below both; llava below all three.
    assert rows["medgemma"]["rank"] == rows["lingshu"]["rank"] == 1
    assert rows["midefics"]["rank"] == 3 and rows["llava"]["rank"] == 4


def test_a_tie_counts_as_half_a_win_and_half_a_loss():
    split = [Battle("x", "y", "a"), Battle("x", "y", "b"), Battle("y", "z", "a")]
    tied = [Battle("x", "y", "tie"), Battle("x", "y", "both_bad"), Battle("y", "z", "a")]
    assert leaderboard.bradley_terry(split) == pytest.approx(leaderboard.bradley_terry(tied))
    assert leaderboard.pair_win_rates(tied)[("x", "y")] == {"win_rate": 0.5, "battles": 2}


def test_the_anchor_moves_every_score_alike():
    battles = simulated(200, seed=2)
    on_llava = leaderboard.bradley_terry(battles, anchor="llava")
    on_medgemma = leaderboard.bradley_terry(battles, anchor="medgemma")
    assert on_medgemma["medgemma"] == 1000
    gaps = {m: on_llava[m] - on_medgemma[m] for m in TRUTH}
    assert max(gaps.values()) - min(gaps.values()) < 1e-6


def test_a_model_that_never_lost_gets_a_finite_score_and_the_prior_fades_with_votes(monkeypatch):
    """The prior keeps the first votes from showing an unbeaten model as infinitely good, and moves scores little
    once there are votes (figures in medvlm/leaderboard.py)."""
    unbeaten = [Battle("new", "old", "a")] * 5 + [Battle("old", "other", "tie")] * 3
    scores = leaderboard.bradley_terry(unbeaten, anchor="old")
    assert math.isfinite(scores["new"]) and 1000 < scores["new"] < 1800
    battles = simulated(100, seed=3)  # 50 votes per model
    with_prior = leaderboard.bradley_terry(battles, anchor="llava")
    monkeypatch.setattr(leaderboard, "PRIOR_C", 1e6)
    without = leaderboard.bradley_terry(battles, anchor="llava")
    assert max(abs(with_prior[m] - without[m]) for m in TRUTH) < 10


def test_counts_and_both_bad_shares():
    battles = [Battle("x", "y", "a"), Battle("y", "x", "both_bad"), Battle("x", "z", "tie"), Battle("z", "y", "b")]
    rows = {r["model"]: r for r in leaderboard.leaderboard(battles, rounds=20)}
    assert (rows["x"]["battles"], rows["x"]["wins"], rows["x"]["losses"], rows["x"]["ties"]) == (3, 1, 0, 1)
    assert rows["y"]["both_bad_share"] == pytest.approx(1 / 3, abs=1e-3) and rows["y"]["wins"] == 1
    assert leaderboard.pair_win_rates(battles)[("x", "y")] == {"win_rate": 0.75, "battles": 2}


def test_bad_battles_are_refused():
    with pytest.raises(ValueError, match="one of a, b, tie, both_bad"):
        Battle("x", "y", "A better")
    with pytest.raises(ValueError, match="two models"):
        Battle("x", "x", "a")
    with pytest.raises(ValueError, match="at least two models"):
        leaderboard.bradley_terry([])
    with pytest.raises(ValueError, match="anchor 'nope' has no battles"):
        leaderboard.bradley_terry([Battle("x", "y", "a")], anchor="nope")


def test_bootstrap_rounds_fitted_together_equal_each_round_fitted_alone():
    """leaderboard._fit hands every bootstrap round to the optimiser as one problem; the rounds share no parameter,
    so each must land where fitting it alone does."""
    rng = np.random.default_rng(4)
    wins = rng.integers(0, 30, size=(40, 5, 5)).astype(float)
    wins[:, range(5), range(5)] = 0
    wins[3, 2, :] = 0  # a round where model 2 never won: the prior keeps its score finite
    together = leaderboard._fit(wins)
    alone = np.concatenate([leaderboard._fit(wins[r:r + 1]) for r in range(len(wins))])
    assert np.isfinite(together).all()
    assert np.abs(together - alone).max() < 0.01, np.abs(together - alone).max()


def test_the_bootstrap_draws_battles_with_replacement():
    """Drawing kinds of battle from a multinomial must give the intervals resampling the battles themselves gives."""
    battles = simulated(400, seed=5)
    ours = leaderboard.bootstrap(battles, anchor="llava", rounds=300, seed=0)
    rng, resampled = random.Random(0), {m: [] for m in TRUTH}
    for _ in range(300):
        for model, score in leaderboard.bradley_terry(rng.choices(battles, k=len(battles)), "llava").items():
            resampled[model].append(score)
    for model in TRUTH:
        low, high = np.percentile(resampled[model], [2.5, 97.5])
        assert abs(ours[model][0] - low) < 25 and abs(ours[model][1] - high) < 25, (model, ours[model], (low, high))
