"""The certified plateau, the saturating fit, the extension rule and the multiple-comparison
corrections of :mod:`fedjax_deep.analysis.stats`, on synthetic curves and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedjax_deep.analysis import stats


def test_a_curve_flat_early_then_rising_to_its_end_is_not_certified():
    """Issue 23's depth-16 seed: flat for 16 rounds (which the old rule flagged as a plateau),
    then +75 points by round 80. Certification reads the last round only."""
    rounds = np.arange(1, 81)
    curve = np.where(rounds <= 16, 10.0, 10.0 + 75.0 * (rounds - 16) / 64)
    out = stats.certify_plateau(curve, rounds, window=10, tolerance=0.5)
    assert not out["certified"] and out["since"] is None
    # Last 10 evaluations (rounds 71-80) against rounds 61-70: 10 rounds at 75/64 a round.
    assert out["gain"] == pytest.approx(10 * 75 / 64)
    assert out["slope"] == pytest.approx(75 / 64)
    assert out["end"] == pytest.approx(10 + 75 * (75.5 - 16) / 64)
    assert out["reason"].startswith("still rising")


def test_a_flat_noisy_tail_is_certified_from_where_the_criterion_holds():
    rng = np.random.default_rng(0)
    rounds = np.arange(1, 81)
    curve = np.minimum(rounds, 40).astype(float) + rng.normal(0, 1.0, 80) * (rounds > 40)
    out = stats.certify_plateau(curve, rounds, window=10, tolerance=0.5)
    assert out["certified"] and out["reason"] is None
    assert out["end"] == pytest.approx(curve[-10:].mean())
    # `since` is the first round after the last failing evaluation: recompute by hand.
    holds = [curve[j - 9 : j + 1].mean() - curve[j - 19 : j - 9].mean() < 0.5
             for j in range(19, 80)]  # fmt: skip
    first = max(i for i, h in enumerate(holds) if not h) + 1
    assert out["since"] == rounds[first + 19]
    assert out["since"] > 40  # never while the ramp is in the windows
    assert abs(out["slope"]) < 0.2


def test_certify_needs_two_windows():
    out = stats.certify_plateau(np.ones(19), np.arange(19), window=10)
    assert not out["certified"] and out["reason"].startswith("too short: 19 evaluations")
    assert out["end"] == 1.0
    assert stats.certify_plateau(np.ones(20), np.arange(20), window=10)["since"] == 19


def test_saturating_fit_recovers_a_noiseless_curve():
    rounds = np.arange(1, 81, dtype=float)
    curve = 90.0 - 70.0 * np.exp(-rounds / 12.0)
    fit = stats.saturating_fit(rounds, curve)
    assert fit["reason"] is None
    # Fitted from the first round: b is the distance there, b exp(-1 / 12) = -70 exp(-1 / 12).
    assert fit["a"] == pytest.approx(90.0, abs=1e-4)
    assert fit["tau"] == pytest.approx(12.0, rel=1e-4)
    assert fit["b"] == pytest.approx(-70.0 * math.exp(-1 / 12), rel=1e-4)


def test_saturating_fit_refuses_an_asymptote_out_of_view():
    rounds = np.arange(1, 41, dtype=float)
    line = 0.5 * rounds  # no saturation: tau runs to its bound (the span)
    fit = stats.saturating_fit(rounds, line)
    assert fit["a"] is None and "at its bound" in fit["reason"]
    capped = stats.saturating_fit(rounds, 60 + 50 * (1 - np.exp(-rounds / 5)), a_bounds=(0, 100))
    assert capped["a"] is None and capped["reason"].startswith("asymptote")
    assert stats.saturating_fit([1, 2, 3], [1, 2, 3])["reason"].startswith("too few")


def test_extension_rule_resumes_uncertified_arms_up_to_the_cap():
    flags = {"CL": [True, True], "FL": [True, False]}
    out = stats.extension_rule(flags, num_rounds=80, step=40, cap=160)
    assert out["CL"]["resume_to"] is None and out["CL"]["verdict"] == "certified"
    assert out["FL"]["resume_to"] == 120 and out["FL"]["uncertified"] == 1
    assert stats.extension_rule(flags, 140, 40, 160)["FL"]["resume_to"] == 160
    at_cap = stats.extension_rule(flags, 160, 40, 160)["FL"]
    assert at_cap["resume_to"] is None and "still rising at the cap" in at_cap["verdict"]


def test_holm_and_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04, then the
    # running maximum -> 0.02, 0.03, 0.06, 0.06; back in input order.
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p * 4 / rank -> 0.02, 0.02, 0.04, 0.04, then the running minimum from the top.
    assert stats.benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])
    assert stats.benjamini_hochberg([0.6, 0.5]) == pytest.approx([0.6, 0.6])
    with pytest.raises(ValueError, match="p-values"):
        stats.holm([0.1, math.nan])


def test_paired_interval_p_matches_its_interval():
    """p < 0.05 exactly when the 95% interval excludes 0; the t statistic by hand."""
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 0.5, 1.0, 1.0]
    out = stats.paired_interval(a, b)
    d = np.subtract(a, b)
    t = d.mean() / (d.std(ddof=1) / 2)
    from scipy import stats as sp

    assert out["p"] == pytest.approx(2 * sp.t.sf(t, 3))
    assert (out["p"] < 0.05) == out["resolved"]
    assert math.isnan(stats.paired_interval([1.0], [0.0])["p"])
