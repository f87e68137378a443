"""The statistics of the comparison protocol, and how an interval is written down.

Decided before any outcome is looked at (issue 14):

- **Tuning.** Each arm (FL, CL, steps-matched CL, ...) picks its own learning rate from a stated
  grid by its *validation* accuracy at the plateau (mean of :func:`plateau_value` over the seeds
  that every rate of the grid ran: seeds added later at the chosen rate confirm, never choose),
  never by test accuracy (``data.validation_fraction`` carves the validation split). A run that
  stopped on non-finite values scores ``-inf``. Ties go to the smaller learning rate:
  :func:`choose_learning_rate`, :func:`grid_edge`.
- **Plateau.** A curve has plateaued at the first evaluation ``i`` after which the mean of the next
  ``window`` evaluations exceeds the mean of the ``window`` before by less than ``tol`` (absolute
  accuracy): :func:`plateau_round`. An arm that has not plateaued by its horizon is reported as
  such; its numbers are then a snapshot, not an end point.
- **End point.** :func:`plateau_value`: the mean of the last ``window`` evaluations (less noisy
  than the last one alone).
- **Speed.** :func:`rounds_to`: the first round at which a curve reaches a threshold (a fraction of
  the reference arm's final accuracy); :func:`curve_area`: the mean accuracy over the horizon (area
  under the learning curve divided by its length).
- **Intervals.** :func:`paired_interval`: the mean of per-seed differences between two arms that
  share seeds (same data split, partition and initialization) and its t-interval; :func:`interval`
  (and its tuple view :func:`mean_ci`): one arm's values alone; :func:`seeds_needed`: how many seeds
  resolve a difference of a given size at a measured spread.

Curves are ``rounds: [E]`` (ints, increasing) and ``values: [E]`` (floats), one entry per evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

WINDOW = 5  # evaluations
TOL = 0.005  # accuracy (half a point)


# -- curves ---------------------------------------------------------------------------------------


def plateau_round(
    rounds: np.ndarray, values: np.ndarray, window: int = WINDOW, tol: float = TOL
) -> int | None:
    """The round of the first evaluation after which the curve gains less than ``tol`` from one
    ``window`` of evaluations to the next; None when it has not plateaued within the curve."""
    for i in range(window, len(values) - window + 1):
        before = values[i - window : i].mean()
        after = values[i : i + window].mean()
        if after - before < tol:
            return int(rounds[i - 1])
    return None


def plateau_value(values: np.ndarray, window: int = WINDOW) -> float:
    """The mean of the last ``window`` evaluations (nan for an empty curve)."""
    if len(values) == 0:
        return math.nan
    return float(np.mean(values[-window:]))


def rounds_to(rounds: np.ndarray, values: np.ndarray, threshold: float) -> int | None:
    """The first round at which ``values >= threshold``; None if it never gets there."""
    hit = np.flatnonzero(values >= threshold)
    return int(rounds[hit[0]]) if len(hit) else None


def curve_area(rounds: np.ndarray, values: np.ndarray, horizon: int | None = None) -> float:
    """Mean accuracy over rounds ``0..horizon`` (trapezoids; the curve held flat after its last
    evaluation up to ``horizon``; starts at its first evaluation): a number that rewards both speed
    and end point."""
    if len(values) == 0:
        return math.nan
    horizon = int(rounds[-1]) if horizon is None else horizon
    r = np.concatenate([rounds, [horizon]]) if rounds[-1] < horizon else rounds
    v = np.concatenate([values, [values[-1]]]) if rounds[-1] < horizon else values
    keep = r <= horizon
    r, v = r[keep], v[keep]
    if len(r) == 1:
        return float(v[0])
    area = float(np.sum((r[1:] - r[:-1]) * (v[1:] + v[:-1]) / 2))
    return area / float(r[-1] - r[0])


# -- intervals over seeds -------------------------------------------------------------------------


def t_quantile(n: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile of a ``level`` interval from ``n`` values (``n - 1``
    degrees of freedom)."""
    from scipy import stats  # scipy is slow to import: only where an interval is computed

    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """``a - b`` over paired seeds (``a, b: [seeds]``): mean, t-interval half-width, standard
    deviation, count, the per-seed differences, and whether the interval excludes 0. Pairs with a
    missing or non-finite value are dropped (and counted apart)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]  # fmt: skip
    d = np.asarray([x - y for x, y in pairs], float)
    out = {"n": len(d), "dropped": len(a) - len(d), "per_seed": [float(x) for x in d]}
    if len(d) == 0:
        return {**out, "mean": math.nan, "half": math.nan, "sd": math.nan, "resolved": False}
    mean = float(d.mean())
    if len(d) == 1:
        return {**out, "mean": mean, "half": math.nan, "sd": math.nan, "resolved": False}
    sd = float(d.std(ddof=1))
    half = t_quantile(len(d), level) * sd / math.sqrt(len(d))
    return {**out, "mean": mean, "half": half, "sd": sd, "resolved": abs(mean) > half}


def interval(values: Sequence[float], level: float = 0.95) -> dict:
    """One arm's values over seeds (``[seeds]``): :func:`paired_interval` against zero (mean,
    t-interval half-width, count; missing and non-finite values dropped)."""
    return paired_interval(values, [0.0] * len(values), level)


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, int]:
    """:func:`interval` as ``(mean, half-width, count)``: nan half-width for one value, nan mean
    for none."""
    stat = interval(list(values), level)
    return stat["mean"], stat["half"], stat["n"]


def seeds_needed(sd: float, half_width: float, level: float = 0.95, most: int = 1000) -> int:
    """The fewest seeds whose paired t-interval has half-width <= ``half_width`` at standard
    deviation ``sd`` of the differences (at least 2)."""
    for n in range(2, most + 1):
        if t_quantile(n, level) * sd / math.sqrt(n) <= half_width:
            return n
    return most


# -- tuning ---------------------------------------------------------------------------------------


def choose_learning_rate(
    scores: Mapping[float, Sequence[float | None]],
) -> tuple[float, dict[float, float]]:
    """The learning rate whose mean validation score over seeds is highest (a seed whose run
    stopped, None or nan, scores -inf: a learning rate that diverges on any seed is not chosen
    over one that never does). Returns ``(chosen, {lr: mean score})``; ties go to the smaller."""
    means = {}
    for lr, values in scores.items():
        vals = [v if v is not None and math.isfinite(v) else -math.inf for v in values]
        means[lr] = float(np.mean(vals)) if vals else -math.inf
    if not means:
        raise ValueError("no learning rates to choose from")
    best = max(means.values())
    chosen = min(lr for lr, m in means.items() if m == best)
    return chosen, means


def grid_edge(chosen: float, grid: Sequence[float]) -> str | None:
    """A warning when the choice sits at an end of its grid (the best may lie beyond it)."""
    ordered = sorted(grid)
    if len(ordered) > 1 and chosen in (ordered[0], ordered[-1]):
        side = "smallest" if chosen == ordered[0] else "largest"
        return f"learning rate {chosen:g} is the grid's {side}: widen the grid"
    return None


# -- how an interval is written -------------------------------------------------------------------


def fmt_ci(mean: float, half: float, scale: float = 1.0, digits: int = 1) -> str:
    """``'87.7 ± 0.9'`` (``mean`` and ``half`` times ``scale``); ``'-'`` for no value, no ``±``
    for no interval."""
    if mean is None or not math.isfinite(mean):
        return "-"
    text = f"{mean * scale:.{digits}f}"
    if half is not None and math.isfinite(half):
        text += f" ± {half * scale:.{digits}f}"
    return text


def fmt_sci(mean: float, half: float) -> str:
    """``'4.00e-02 ± 1.0e-03'``: an interval of small positive values (divergences)."""
    if mean is None or not math.isfinite(mean):
        return "-"
    return f"{mean:.2e}" + (f" ± {half:.1e}" if half is not None and math.isfinite(half) else "")


def fmt_stat(stat: Mapping | None, scale: float = 100.0, digits: int = 1) -> str:
    """:func:`fmt_ci` of an :func:`interval` or :func:`paired_interval` (``'-'`` for None; a
    JSON-read interval's None for nan is read as nan)."""
    if not stat:
        return "-"
    return fmt_ci(stat.get("mean"), stat.get("half"), scale, digits)


def fmt_gap(stat: Mapping | None, scale: float = 100.0) -> str:
    """:func:`fmt_stat` of a paired difference, marked ``(n.r.)`` when its interval includes 0."""
    text = fmt_stat(stat, scale)
    return text if text == "-" or stat.get("resolved") else text + " (n.r.)"
