"""The statistics of the comparison protocol, and how an interval is written down.

Decided before any outcome is looked at (issue 14):

- **Tuning.** Each arm (FL, CL, steps-matched CL, ...) picks its own learning rate from a stated
  grid by its *validation* accuracy at the plateau (mean of :func:`plateau_value` over the seeds
  that every rate of the grid ran: seeds added later at the chosen rate confirm, never choose),
  never by test accuracy (``data.validation_fraction`` carves the validation split). A run that
  stopped on non-finite values scores ``-inf``. Ties go to the smaller learning rate:
  :func:`choose_learning_rate`, :func:`grid_edge`.
- **Plateau, certified.** A curve has plateaued only if the criterion holds *at its last
  evaluation*: the mean of its last ``window`` (10) evaluations exceeds the mean of the ``window``
  before by less than a stated tolerance (0.5 points): :func:`certify_plateau`, which also gives
  the slope over those ``2 window`` evaluations and the round from which the criterion has held
  without a break (a curve flat early and rising late is *not* certified; issue 23 replaced the
  old rule, "the first window gaining under the tolerance", which seed noise fired mid-climb). An
  arm with uncertified seeds is resumed with more rounds by a stated rule up to a stated cap
  (:func:`extension_rule`); until then its gaps measure speed, not final accuracy. As a second
  reading, :func:`saturating_fit` fits ``a + b exp(-r / tau)`` per seed and reports its
  asymptote ``a`` (paired across arms with :func:`paired_interval`).
- **End point.** :func:`plateau_value`: the mean of the last ``window`` evaluations (less noisy
  than the last one alone).
- **Speed.** :func:`rounds_to`: the first round at which a curve reaches a threshold (a fraction of
  the reference arm's final accuracy); :func:`curve_area`: the mean accuracy over the horizon (area
  under the learning curve divided by its length).
- **Intervals.** :func:`paired_interval`: the mean of per-seed differences between two arms that
  share seeds (same data split, partition and initialization) and its t-interval; :func:`interval`
  (and its tuple view :func:`mean_ci`): one arm's values alone; :func:`seeds_needed`: how many seeds
  resolve a difference of a given size at a measured spread. Each paired interval carries its
  two-sided paired t-test p-value (``p``); :func:`holm` and :func:`benjamini_hochberg` adjust a
  family of them for multiple comparisons.

Curves are ``rounds: [E]`` (ints, increasing) and ``values: [E]`` (floats), one entry per evaluation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

WINDOW = 5  # evaluations (the end value's window)
TOL = 0.005  # accuracy (half a point): the certification tolerance
PLATEAU_WINDOW = 10  # evaluations: each of the two windows certify_plateau compares
EXTEND_STEP = 40  # rounds an uncertified arm is resumed by (extension_rule)
EXTEND_CAP = 160  # rounds past which it is reported as still rising (configs/e1/paper_regime.py)


# -- curves ---------------------------------------------------------------------------------------


def certify_plateau(
    values: Sequence[float],
    rounds: Sequence[int],
    window: int = PLATEAU_WINDOW,
    tolerance: float = 0.5,
) -> dict:
    """Whether a curve (``values, rounds: [E]``) has plateaued *at its last evaluation*.

    The criterion at evaluation ``j``: the mean of evaluations ``j - window + 1 .. j`` exceeds the
    mean of the ``window`` before by less than ``tolerance`` (in the units of ``values``: points
    for accuracy in %). Returns ``certified`` (the criterion holds at the last evaluation),
    ``reason`` (None when certified; ``too short`` under ``2 window`` evaluations; ``still
    rising`` with the gain), ``end`` (the mean of the last ``window`` evaluations), ``gain`` (that
    mean minus the one before), ``slope`` (least-squares, values per round over the last
    ``2 window`` evaluations), ``since`` (the round from which the criterion has held at every
    evaluation up to the last; None when not certified) and ``last_round``.
    """
    v = np.asarray(values, float)
    r = np.asarray(rounds, float)
    if len(v) != len(r):
        raise ValueError(f"values [{len(v)}] and rounds [{len(r)}] differ in length")
    out = {"certified": False, "reason": None, "end": math.nan, "gain": math.nan,
           "slope": math.nan, "since": None, "last_round": int(r[-1]) if len(r) else None,
           "window": window, "tolerance": tolerance}  # fmt: skip
    if len(v):
        out["end"] = float(v[-window:].mean())
    if len(v) < 2 * window or window < 1:
        out["reason"] = f"too short: {len(v)} evaluations, certifying needs {2 * window}"
        return out
    if not np.all(np.isfinite(v[-2 * window :])):
        out["reason"] = "non-finite values in the last two windows"
        return out
    sums = np.concatenate([[0.0], np.cumsum(v)])
    means = (sums[window:] - sums[:-window]) / window  # means[k]: evaluations k .. k + window - 1
    gains = means[window:] - means[:-window]  # gains[i]: at evaluation i + 2 window - 1
    holds = gains < tolerance
    tail_r, tail_v = r[-2 * window :], v[-2 * window :]
    out["gain"] = float(gains[-1])
    out["slope"] = float(np.polyfit(tail_r, tail_v, 1)[0]) if np.ptp(tail_r) > 0 else math.nan
    if not holds[-1]:
        out["reason"] = f"still rising: +{gains[-1]:.2f} over the last window (>= {tolerance:g})"
        return out
    broken = np.flatnonzero(~holds)
    first = int(broken[-1]) + 1 if len(broken) else 0
    out.update(certified=True, since=int(r[first + 2 * window - 1]))
    return out


def extension_rule(
    certified: Mapping[str, Sequence[bool]],
    num_rounds: int,
    step: int = EXTEND_STEP,
    cap: int = EXTEND_CAP,
) -> dict:
    """Which arms to resume, and to how many rounds: an arm (``{arm: [seeds] certified?}``) with
    any seed not certified at ``num_rounds`` is resumed to ``min(num_rounds + step, cap)``; at the
    cap it is reported as still rising (``resume_to`` None). Returns ``{arm: {"uncertified": k,
    "seeds": n, "resume_to": rounds or None, "verdict": text}}``."""
    if step < 1 or cap < 1:
        raise ValueError(f"extension step={step} and cap={cap} must be positive rounds")
    out = {}
    for arm, flags in certified.items():
        k = sum(not f for f in flags)
        if k == 0:
            verdict, resume = "certified", None
        elif num_rounds >= cap:
            verdict, resume = f"still rising at the cap ({cap} rounds): report as such", None
        else:
            resume = min(num_rounds + step, cap)
            verdict = f"resume to {resume} rounds"
        out[arm] = {"uncertified": k, "seeds": len(flags), "resume_to": resume, "verdict": verdict}
    return out


def saturating_fit(
    rounds: Sequence[float],
    values: Sequence[float],
    *,
    tau_bounds: tuple[float, float] | None = None,
    a_bounds: tuple[float, float] = (-math.inf, math.inf),
    start_fraction: float = 0.0,
) -> dict:
    """A least-squares fit of ``values ~ a + b exp(-rounds / tau)`` (``rounds, values: [E]``):
    ``{a, b, tau, rmse, start_round, reason}``, ``a`` the asymptote.

    Guards, each a stated parameter: ``tau`` within ``tau_bounds`` (default: a tenth of the first
    round spacing to the span of the fitted rounds: a longer time constant is an extrapolation),
    ``a`` within ``a_bounds`` (``(0, 100)`` for accuracy in %). ``start_fraction`` > 0 fits only
    from the first evaluation at which the curve has covered that fraction of its range (an
    exponential cannot follow a curve that stays flat before it rises). A fit that fails, or
    whose ``tau`` or ``a`` sits at a bound, gives ``a = None`` and a ``reason``."""
    r = np.asarray(rounds, float)
    v = np.asarray(values, float)
    out = {"a": None, "b": None, "tau": None, "rmse": None, "start_round": None, "reason": None}
    keep = np.isfinite(v)
    r, v = r[keep], v[keep]
    if start_fraction > 0 and len(v):
        lo_v, hi_v = float(v.min()), float(v.max())
        first = int(np.argmax(v >= lo_v + start_fraction * (hi_v - lo_v)))
        r, v = r[first:], v[first:]
    if len(v) < 4 or np.ptp(r) <= 0:
        out["reason"] = f"too few evaluations to fit ({len(v)})"
        return out
    out["start_round"] = float(r[0])
    span = float(np.ptp(r))
    t = r - r[0]  # fitted from the first kept round: b is the value's distance there
    lo, hi = tau_bounds or (0.1 * float(np.min(np.diff(np.sort(r)))), span)
    from scipy.optimize import curve_fit  # scipy is slow to import: only where a fit is made

    def model(x, a, b, tau):
        return a + b * np.exp(-x / tau)

    a_lo, a_hi = a_bounds
    tail = float(np.clip(v[-max(1, len(v) // 5) :].mean(), a_lo, a_hi))
    guess = (tail, float(v[0] - tail), float(np.clip(span / 4, lo, hi)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, b, tau), _ = curve_fit(model, t, v, p0=guess, maxfev=5000,
                                       bounds=([a_lo, -np.inf, lo], [a_hi, np.inf, hi]))  # fmt: skip
    except (RuntimeError, ValueError) as e:
        out["reason"] = f"fit failed: {str(e).splitlines()[0]}"
        return out
    rmse = float(np.sqrt(np.mean((model(t, a, b, tau) - v) ** 2)))
    out.update(b=float(b), tau=float(tau), rmse=rmse)
    if tau >= hi * (1 - 1e-3) or tau <= lo * (1 + 1e-3):
        out["reason"] = f"tau {tau:.3g} at its bound [{lo:.3g}, {hi:.3g}]: no asymptote in view"
    elif a >= a_hi - 1e-6 * max(1.0, abs(a_hi)) or a <= a_lo + 1e-6 * max(1.0, abs(a_lo)):
        out["reason"] = f"asymptote {a:.3g} at its bound [{a_lo:g}, {a_hi:g}]"
    else:
        out["a"] = float(a)
    return out


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
    deviation, count, the per-seed differences, whether the interval excludes 0 and the paired
    t-test's two-sided p-value (:func:`t_test_p`). Pairs with a
    missing or non-finite value are dropped (and counted apart)."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True)
             if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]  # fmt: skip
    d = np.asarray([x - y for x, y in pairs], float)
    out = {"n": len(d), "dropped": len(a) - len(d), "per_seed": [float(x) for x in d]}
    if len(d) == 0:
        return {**out, "mean": math.nan, "half": math.nan, "sd": math.nan, "resolved": False,
                "p": math.nan}  # fmt: skip
    mean = float(d.mean())
    if len(d) == 1:
        return {**out, "mean": mean, "half": math.nan, "sd": math.nan, "resolved": False,
                "p": math.nan}  # fmt: skip
    sd = float(d.std(ddof=1))
    half = t_quantile(len(d), level) * sd / math.sqrt(len(d))
    return {**out, "mean": mean, "half": half, "sd": sd, "resolved": abs(mean) > half,
            "p": t_test_p(mean, sd, len(d))}  # fmt: skip


def t_test_p(mean: float, sd: float, n: int) -> float:
    """The two-sided one-sample t-test p-value of ``mean`` against 0 from ``n`` values of
    standard deviation ``sd`` (``n - 1`` degrees of freedom): below ``1 - level`` exactly when
    the ``level`` t-interval excludes 0. nan under 2 values; 0 for a nonzero mean at ``sd = 0``."""
    if n < 2 or not math.isfinite(mean) or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 1.0 if mean == 0 else 0.0
    from scipy import stats

    return float(2 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


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


# -- multiple comparisons -------------------------------------------------------------------------


def _p_array(p_values: Sequence[float]) -> np.ndarray:
    p = np.asarray(p_values, float)
    if p.ndim != 1 or np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be a flat list in [0, 1], got {list(p_values)!r}")
    return p


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (``p_values: [m]``, same order out): the k-th smallest
    is ``max over j <= k of min(1, (m - j + 1) p_(j))``. A test survives at family-wise error
    ``alpha`` when its adjusted p is below ``alpha``."""
    p = _p_array(p_values)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values; ``p_values: [m]``, same order out): the
    k-th smallest is ``min over j >= k of min(1, m p_(j) / j)``. Tests whose q is below ``alpha``
    keep the false discovery rate at ``alpha``."""
    p = _p_array(p_values)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adjusted
    return out


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
