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


def _comparison():
    """Two arms on two seeds over 60 rounds: CL saturated (certified), FL a saturating curve
    still climbing at round 60 (tau 15 and 18: +1.4 points over its last 10 rounds)."""
    rounds = list(range(1, 61))
    r = np.asarray(rounds, float)

    def seed(curve):
        return {"final": float(np.mean(curve[-5:])), "rounds": rounds, "accuracy": list(curve)}

    cl = {s: seed(0.9 - 0.8 * np.exp(-r / (3 + int(s)))) for s in ("0", "1")}
    fl = {s: seed(0.9 - 0.8 * np.exp(-r / (15 + 3 * int(s)))) for s in ("0", "1")}

    def final(per_seed):
        return stats.interval([p["final"] for p in per_seed.values()])

    return {"group": "model.depth", "tol": 0.005, "reference_arms": {"16": "CL"},
            "reference": {"mode": "centralized"},
            "groups": {"16": {"CL": {"role": "CL", "chosen_lr": 0.01, "per_seed": cl, "final": final(cl)},
                              "FL": {"role": "FL", "chosen_lr": 0.1, "per_seed": fl, "final": final(fl),
                                     "gap": {"mean": 0.1, "half": 0.01, "resolved": True}}}}}  # fmt: skip


def test_compare_reads_a_gap_taken_while_an_arm_rises_as_speed():
    from fedjax_deep.analysis import compare

    result = compare.certify_result(_comparison())
    cl, fl = result["groups"]["16"]["CL"], result["groups"]["16"]["FL"]
    assert cl["certified"] == 2 and fl["certified"] == 0
    assert fl["reading"] == compare.SPEED
    # Both arms saturate at 90%: the fitted asymptotes agree though the end values differ.
    assert cl["asymptote"]["mean"] == pytest.approx(90.0, abs=0.01)
    assert fl["asymptote"]["mean"] == pytest.approx(90.0, abs=0.5)
    assert abs(fl["asymptote_gap"]["mean"]) < 0.5
    rising = fl["per_seed"]["0"]["plateau"]
    assert rising["slope"] > 0.05 and rising["reason"].startswith("still rising")
    text = "\n".join(compare.plateau_table(result))
    assert "| 16 | FL |" in text and "0/2" in text and compare.SPEED in text
    assert "0: +" in text  # seed 0's slope, points a round


def test_curves_mark_certified_and_rising_seeds_and_ratio_axes_read():
    from fedjax_deep.analysis import compare, plots

    result = compare.certify_result(_comparison())
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    cl = result["groups"]["16"]["CL"]["per_seed"]
    assert plots.seed_marks(ax, cl, "tab:blue") == (2, 0)
    dot = ax.lines[0]
    since = cl["0"]["plateau"]["since"]
    assert dot.get_xdata()[0] == since
    assert dot.get_ydata()[0] == pytest.approx(100 * cl["0"]["accuracy"][since - 1])
    fl = result["groups"]["16"]["FL"]["per_seed"]
    assert plots.seed_marks(ax, fl, "tab:red") == (0, 2)
    assert ax.lines[-1].get_xdata()[0] == 60 and ax.lines[-1].get_markerfacecolor() == "none"
    # A narrow range stays linear; 0.9-16 goes log with plain-number ticks.
    assert not plots.ratio_axis(ax, [0.9, 1.1]) and ax.get_yscale() == "linear"
    assert plots.ratio_axis(ax, [0.9, 2.2, 7.6, 16.1]) and ax.get_yscale() == "log"
    assert list(ax.get_yticks()) == pytest.approx([0.5, 1, 2, 5, 10, 20])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "1", "2", "5", "10", "20"]
    plt.close(fig)
