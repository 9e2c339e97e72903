"""Agreement and interval maths for physician verdicts: Cohen's kappa (two raters), Fleiss' kappa (any number of
raters, same count per item), and the Wilson score interval for an accuracy."""
import math
from collections import Counter


def cohen_kappa(first: list[str], second: list[str]) -> float:
    """Cohen's kappa for two raters' labels on the same items, in order. 1.0 when both agree on a single category."""
    if len(first) != len(second) or not first:
        raise ValueError("two equally long, non-empty label lists are needed")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second)) / n
    a_counts, b_counts = Counter(first), Counter(second)
    expected = sum(a_counts[c] * b_counts[c] for c in a_counts.keys() | b_counts.keys()) / n**2
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(ratings: list[list[str]]) -> float:
    """Fleiss' kappa; ratings[i] holds every rater's label for item i (the same number of raters per item)."""
    if not ratings or len({len(r) for r in ratings}) != 1 or len(ratings[0]) < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    n_items, raters = len(ratings), len(ratings[0])
    categories = sorted({label for item in ratings for label in item})
    counts = [[Counter(item)[c] for c in categories] for item in ratings]
    p_items = [(sum(c * c for c in row) - raters) / (raters * (raters - 1)) for row in counts]
    p_bar = sum(p_items) / n_items
    shares = [sum(row[j] for row in counts) / (n_items * raters) for j in range(len(categories))]
    p_expected = sum(s * s for s in shares)
    return 1.0 if p_expected == 1 else (p_bar - p_expected) / (1 - p_expected)


def kappa_with_interval(first: list, second: list, z: float = 1.959964) -> dict:
    """Cohen's kappa with the usual large-sample 95 % interval (Cohen 1960's standard error); None for no items."""
    n = len(first)
    if n == 0:
        return {"value": None, "ci95": None, "n": 0}
    kappa = cohen_kappa([str(v) for v in first], [str(v) for v in second])
    observed = sum(a == b for a, b in zip(first, second)) / n
    expected = sum((first.count(c) / n) * (second.count(c) / n) for c in set(first) | set(second))
    se = (observed * (1 - observed) / n) ** 0.5 / (1 - expected) if expected < 1 else 0.0
    return {"value": round(kappa, 3), "ci95": [round(max(-1.0, kappa - z * se), 3), round(min(1.0, kappa + z * se), 3)], "n": n}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % (by default) Wilson score interval for successes / n; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(successes: int, n: int) -> dict:
    """A percentage with its 95 % Wilson interval, as every report writes one (value and interval None when n is 0)."""
    if n == 0:
        return {"value": None, "ci95": None, "n": 0}
    low, high = wilson_interval(successes, n)
    return {"value": round(100 * successes / n, 2), "ci95": [round(100 * low, 1), round(100 * high, 1)], "n": n}
