"""The tuned comparison of a sweep's arms (issue 14's protocol), read back from its run directories.

:func:`compare` puts every arm (FL, CL, steps-matched CL, the null reference, named by role:
:mod:`fedjax_deep.analysis.runs`) at its own learning rate chosen on validation accuracy, per group
(a depth, say), and states paired differences over seeds against the reference arm and against
every reference-role arm present (CL and steps-matched CL), so one comparison holds every gap.
:func:`markdown` writes it as tables; :func:`write_comparison` writes ``compare.md``,
``compare.json`` and the figures (:mod:`fedjax_deep.analysis.plots`). The rules themselves
(plateau, tuning, intervals) are :mod:`fedjax_deep.analysis.stats`'s.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from fedjax_deep.analysis.runs import (
    CL,
    FL,
    NULL,
    REFERENCE_ROLES,
    arm_names,
    check_writable,
    curve,
    field_value,
    matches,
    read_sweeps,
    reference_batch,
    role,
    sort_key,
)
from fedjax_deep.analysis.stats import (
    EXTEND_CAP,
    EXTEND_STEP,
    PLATEAU_WINDOW,
    TOL,
    WINDOW,
    certify_plateau,
    choose_learning_rate,
    curve_area,
    extension_rule,
    fmt_gap,
    fmt_stat,
    grid_edge,
    interval,
    paired_interval,
    plateau_value,
    rounds_to,
    saturating_fit,
)
from fedjax_deep.errors import InputError
from fedjax_deep.runfiles import CONFIG

SCALE_FREE = ("update", "cosine", "grad")  # U_l, the mean update cosine, gradient divergence
SPEED = "speed, not final accuracy"  # a gap measured while an arm still rises


def compare(
    sweep_dirs,
    *,
    group: str | Sequence[str] = "model.depth",
    tune: str = "client_opt.learning_rate",
    reference: Mapping[str, object] | None = None,
    window: int = WINDOW,
    tol: float = TOL,
    defaults: Mapping[str, object] | None = None,
    require_reference: bool = False,
    tune_on: str = "val",
    plateau_window: int = PLATEAU_WINDOW,
    at_round: int | None = None,
) -> dict:
    """Every arm of one or several sweeps at its own tuned learning rate, against the reference
    arm, per value of ``group``, with seeds paired.

    ``sweep_dirs`` is one sweep's workdir or several (a control sweep read together with the
    baseline sweep it shares seeds with: the same seed gives the same split, partition and
    initialization). ``group`` is a field or several (comma-separated): each combination of their
    values is one group with its own reference arm (the CL of the same architecture, say). The
    swept fields other than ``group``, ``tune`` and ``seed`` tell the arms apart; arms are named by
    role (``FL``, ``CL``, ``steps-matched CL``, ``null``; :func:`~fedjax_deep.analysis.runs.arm_names`).
    ``reference`` (``{field: value}``, values compared as strings) picks each group's reference arm
    (the CL one where several match). ``defaults`` (``{field: value}``) are the values of fields
    absent from an old run's ``config.json``. ``require_reference``: a reference that matches no
    arm of any group is an :class:`~fedjax_deep.errors.InputError` (one asked for by name must
    exist; without it, a sweep with no reference arm is compared without gaps).

    For each group and arm: the learning rate chosen on validation accuracy
    (:func:`~fedjax_deep.analysis.stats.choose_learning_rate`, each arm alone), and at that rate, per
    seed, the test end value (the mean of the last ``window`` evaluations), its certified plateau
    (``plateau``: :func:`~fedjax_deep.analysis.stats.certify_plateau` over ``plateau_window``
    evaluations at tolerance ``tol``, in points), the saturating fit (``fit``: its asymptote
    ``a``, accuracy in %), the curve area and the rounds to reach 50% and 80% of the reference
    arm's end value on the same seed; per arm, ``certified`` (how many seeds) and ``asymptote``
    (an interval over seeds, in %). For arms other than the reference and the null: ``gap`` and
    ``area_gap``, the paired differences (reference minus arm) of the end value and the curve
    area, ``asymptote_gap`` (of the fitted asymptotes, over the seeds both fitted), ``reading``
    (``final accuracy`` when both arms are certified on every seed, else ``speed, not final
    accuracy``) and ``gaps``, the end-value difference against every reference-role arm (CL and
    steps-matched CL) by name.

    ``tune_on``: ``'val'`` (validation accuracy; runs without a validation split are refused
    wherever an arm has several rates to choose from) or ``'test'``, asked for explicitly and
    recorded as ``tuned_on``: the rates are then chosen on the accuracy the comparison reports.

    ``at_round``: read every run at that round, so that arms run for different lengths (one
    extended by the plateau rule, one not) are compared at the same round: rows after it are
    dropped, and a run that ends before it is left out and listed in ``short`` (as unfinished
    runs are in ``unfinished``). None: each run at its last round.

    Raises :class:`~fedjax_deep.errors.InputError` (one line) for what cannot be compared: a
    single run's directory, a sweep with no point started, a ``group`` or ``tune`` field no run
    holds, tuning without a validation split.
    """
    reference = dict(reference or {"mode": "centralized"})
    group_fields = [g.strip() for g in group.split(",")] if isinstance(group, str) else list(group)
    if isinstance(sweep_dirs, str | bytes | os.PathLike) or not isinstance(sweep_dirs, Sequence):
        sweep_dirs = [sweep_dirs]
    if tune_on not in ("val", "test"):
        raise InputError(f"--tune-on={tune_on!r}: tune on 'val' (validation accuracy) or 'test'")
    fields, runs = read_sweeps(sweep_dirs)
    _check_comparable(sweep_dirs, runs, [*group_fields, tune], defaults)
    # A run still training, interrupted or being extended is left out (its last round is not
    # the config's); one that stopped on non-finite values stays in and scores -inf.
    unfinished = sorted(r["name"] for r in runs if r.get("unfinished"))
    runs = [r for r in runs if not r.get("unfinished")]
    short = []
    if at_round is not None:
        short = sorted(r["name"] for r in runs if not r["stopped"]
                       and max((row["round"] for row in r["rows"]), default=0) < at_round)  # fmt: skip
        runs = [{**r, "rows": [row for row in r["rows"] if row["round"] <= at_round]}
                for r in runs if r["name"] not in short]  # fmt: skip
        if not runs:
            raise InputError(f"--at-round={at_round}: every run of {', '.join(map(str, sweep_dirs))} "
                             "ends before it; give a round they reach")  # fmt: skip

    def value(config, f):
        return field_value(config, f, defaults)

    arm_fields = [f for f in fields if f not in (*group_fields, tune, "seed")]
    group_values = {f: {str(value(r["config"], f)) for r in runs} for f in group_fields}
    shown = [f for f in group_fields if len(group_values[f]) > 1] or group_fields[:1]
    table: dict = {}
    for run in runs:
        c = run["config"]
        if len(group_fields) == 1:
            g = value(c, group_fields[0])
        else:
            g = ", ".join(f"{f.rsplit('.', 1)[-1]}={value(c, f)}" for f in shown)
        key = (g, tuple((f, value(c, f)) for f in arm_fields))
        table.setdefault(key, {}).setdefault(value(c, tune), {})[c["seed"]] = run
    group_name = group_fields[0] if len(group_fields) == 1 else "group"
    tuned_key = "val/accuracy" if tune_on == "val" else "eval/accuracy"
    if tune_on == "val" and any(len(by_lr) > 1 for by_lr in table.values()):
        if not any(row.get(tuned_key) is not None for r in runs for row in r["rows"]):
            raise InputError(
                f"--tune={tune}: the runs of {', '.join(map(str, sweep_dirs))} logged no "
                "validation accuracy (data.validation_fraction=0), so no rate can be chosen on "
                "it; rerun with a validation split, or pass --tune-on test to choose on test "
                "accuracy (the output says so)"
            )
    out = {"group": group_name, "group_fields": group_fields, "tune": tune, "reference": reference,
           "window": window, "tol": tol, "plateau_window": plateau_window,
           "sweeps": [str(d) for d in sweep_dirs], "groups": {},
           "reference_arms": {}, "tuned_on": tune_on, "unfinished": unfinished,
           "at_round": at_round, "short": short}  # fmt: skip
    # Each arm's role from its runs' configs; its name is the role (and what tells apart two arms
    # that share one), the same in every group.
    batch = reference_batch([r["config"] for r in runs])
    first = {key: next(iter(next(iter(by_lr.values())).values()))["config"]
             for key, by_lr in table.items()}  # fmt: skip
    roles = {arm: role(first[g, arm], batch) for g, arm in table}
    names = arm_names({arm: (roles[arm], dict(arm)) for arm in roles})
    order = sorted(table.items(), key=lambda kv: (sort_key(kv[0][0]), str(kv[0][1])))
    null_runs: dict = {}
    configs: dict = {}
    for (g, arm), by_lr in order:
        # Tuning compares the rates on the seeds every rate ran (extra seeds run later at the
        # chosen rate only, to confirm, cannot move the choice).
        tuning_seeds = sorted(set.intersection(*(set(b) for b in by_lr.values())))
        scores = {}
        for lr, by_seed in by_lr.items():
            scores[lr] = [
                None if by_seed[s]["stopped"]
                else plateau_value(curve(by_seed[s]["rows"], tuned_key)[1], window)
                for s in tuning_seeds
            ]  # fmt: skip
        chosen, means = choose_learning_rate(scores)
        seeds = sorted(by_lr[chosen])
        per_seed = {}
        for s in seeds:
            run = by_lr[chosen][s]
            rounds, acc = curve(run["rows"])
            per_seed[s] = {
                "final": None if run["stopped"] else plateau_value(acc, window),
                **_plateau(rounds, acc, plateau_window, tol),
                "area": curve_area(rounds, acc, at_round or value(run["config"], "num_rounds")),
                "rounds": rounds.tolist(),
                "accuracy": acc.tolist(),
            }
        if roles[arm] == NULL:  # the null reference: every rate it ran at
            null_runs[g] = {lr: list(by_seed.values()) for lr, by_seed in by_lr.items()}
        configs[g, names[arm]] = first[g, arm]
        out["groups"].setdefault(g, {})[names[arm]] = {
            "arm": dict(arm), "role": roles[arm], "chosen_lr": chosen,
            "grid": dict(sorted(means.items())), "grid_warning": grid_edge(chosen, list(means)),
            "per_seed": per_seed, "tuning_seeds": tuning_seeds,
            "divergence": layer_divergence([by_lr[chosen][s] for s in seeds]),
        }  # fmt: skip
    for g, arms in out["groups"].items():
        matching = [a for name, a in arms.items() if matches(configs[g, name], reference, defaults)]
        ref = next((a for a in matching if a["role"] == CL), matching[0] if matching else None)
        out["reference_arms"][g] = next((n for n, a in arms.items() if a is ref), None)
        refs = {name: a for name, a in arms.items() if a["role"] in REFERENCE_ROLES}
        nulls = [a for a in arms.values() if a["role"] == NULL]
        for a in arms.values():
            seeds = sorted(a["per_seed"])
            a["final"] = interval([a["per_seed"][s]["final"] for s in seeds])
            _arm_plateau(a)
            if a["role"] == FL and nulls:
                a["null_ratio"] = null_ratio(a, nulls[0], null_runs[g])
            if a is ref or a["role"] == NULL:
                continue
            a["gaps"] = {name: _paired(r, a, "final") for name, r in refs.items() if r is not a}
            if ref is not None:
                _against_reference(a, ref)
    if require_reference and out["groups"] and not any(out["reference_arms"].values()):
        wanted = ",".join(f"{f}={v}" for f, v in reference.items())
        raise InputError(f"--reference={wanted} matches no arm of {', '.join(map(str, sweep_dirs))}; "
                         "name the reference arm by swept fields, e.g. mode=centralized")  # fmt: skip
    return out


def _check_comparable(sweep_dirs, runs: list[dict], fields: list[str], defaults) -> None:
    """One line for inputs :func:`compare` cannot compare (see its docstring)."""
    where = ", ".join(map(str, sweep_dirs))
    if not runs:
        raise InputError(f"{where}: no point of the sweep has started (no */{CONFIG}); run the "
                         "sweep first")  # fmt: skip
    if all(r["stopped"] or r.get("unfinished") for r in runs):
        raise InputError(f"{where}: no point of the sweep has finished (no */summary.json): "
                         "there is nothing to compare; rerun the sweep's command to finish it")  # fmt: skip
    for f in fields:
        if all(field_value(r["config"], f, defaults, missing=_MISSING) is _MISSING for r in runs):
            option = "--tune" if f == fields[-1] else "--group"
            raise InputError(f"{option}={f!r}: no run of {where} has such a config field; name "
                             "one, e.g. model.depth or client_opt.learning_rate")  # fmt: skip


_MISSING = object()


def _plateau(rounds: np.ndarray, acc: np.ndarray, window: int, tol: float) -> dict:
    """One seed's certified plateau and saturating fit, accuracy in points (``tol`` is in
    accuracy: 0.005 is half a point)."""
    points = 100 * np.asarray(acc, float)
    return {"plateau": certify_plateau(points, rounds, window, 100 * tol),
            "fit": saturating_fit(rounds, points, a_bounds=(0.0, 100.0), start_fraction=0.5)
            if len(points) else {"a": None, "reason": "no evaluations"}}  # fmt: skip


def _arm_plateau(a: dict) -> None:
    """An arm's ``certified`` seeds, ``asymptote`` interval (the fits', in %) and ``extension``
    (:func:`~fedjax_deep.analysis.stats.extension_rule` at its seeds' last round)."""
    seeds = sorted(a["per_seed"])
    flags = [a["per_seed"][s]["plateau"]["certified"] for s in seeds]
    a["certified"] = sum(flags)
    a["asymptote"] = interval([a["per_seed"][s]["fit"]["a"] for s in seeds])
    last = max((a["per_seed"][s]["plateau"]["last_round"] or 0 for s in seeds), default=0)
    a["extension"] = extension_rule({"arm": flags}, last)["arm"]


def _paired(ref: Mapping, arm: Mapping, key: str) -> dict:
    """``ref - arm`` of a per-seed value over the seeds both ran (paired t-interval); ``key``
    ``asymptote`` reads the saturating fit's."""
    common = [s for s in sorted(arm["per_seed"]) if s in ref["per_seed"]]

    def get(a, s):
        return a["per_seed"][s]["fit"]["a"] if key == "asymptote" else a["per_seed"][s][key]

    out = paired_interval([get(ref, s) for s in common], [get(arm, s) for s in common])
    ends = sorted({a["per_seed"][s]["rounds"][-1] for a in (ref, arm) for s in common
                   if a["per_seed"][s].get("rounds")})  # fmt: skip
    if key == "final" and len(ends) > 1:  # one arm extended, the other not: not one round
        out["ends_differ"] = ends
    return out


def _ends_mark(text: str, gap: Mapping | None) -> str:
    """``text`` marked ``‡`` when the gap's two arms end at different rounds."""
    return text + " ‡" if gap and gap.get("ends_differ") and text != "-" else text


def certify_result(result: dict, window: int = PLATEAU_WINDOW, tol: float = TOL) -> dict:
    """Fills in, where missing, each seed's ``plateau`` and ``fit`` and each arm's ``certified``,
    ``asymptote`` and (against the group's reference) ``asymptote_gap`` and ``reading``, from the
    per-seed curves a ``compare.json`` carries: a comparison written before certification (issue
    23) is read under the certified rule without its runs. Returns ``result``, updated in place."""
    result.setdefault("plateau_window", window)
    for gv, arms in result["groups"].items():
        for a in arms.values():
            for p in a["per_seed"].values():
                if "plateau" not in p:
                    p.update(_plateau(np.asarray(p["rounds"]), np.asarray(p["accuracy"]), window,
                                      tol))  # fmt: skip
            _arm_plateau(a)
        ref = arms.get((result.get("reference_arms") or {}).get(gv) or "")
        if ref is None:  # an old comparison names no reference: the arm with no gap
            ref = next((a for a in arms.values() if "gaps" not in a and "gap" not in a
                        and a.get("role", CL) == CL), None)  # fmt: skip
        for a in arms.values():
            if "gap" in a and ref is not None and "asymptote_gap" not in a:
                a["asymptote_gap"] = _paired(ref, a, "asymptote")
                a["reading"] = SPEED if still_rising(a) or still_rising(ref) else "final accuracy"
    return result


def still_rising(a: Mapping) -> bool:
    """Whether any seed of an arm is not certified at its last evaluation."""
    return any(not p["plateau"]["certified"] for p in a["per_seed"].values())


def _against_reference(a: dict, ref: Mapping) -> None:
    """The arm's paired gap, area gap, asymptote gap, the gap's reading and rounds to 50% and
    80% of the reference's end value."""
    a["gap"] = _paired(ref, a, "final")
    a["area_gap"] = _paired(ref, a, "area")
    a["asymptote_gap"] = _paired(ref, a, "asymptote")  # in points
    a["reading"] = SPEED if still_rising(a) or still_rising(ref) else "final accuracy"
    common = [s for s in sorted(a["per_seed"]) if s in ref["per_seed"]]
    for frac in (0.5, 0.8):
        hit = []
        for s in common:
            target, p = ref["per_seed"][s]["final"], a["per_seed"][s]
            hit.append(None if target is None else rounds_to(
                np.asarray(p["rounds"]), np.asarray(p["accuracy"]), frac * target))  # fmt: skip
        reached = [float(r) for r in hit if r is not None]
        a[f"rounds_to_{int(frac * 100)}"] = {
            **interval(reached), "not_reached": sum(r is None for r in hit), "per_seed": hit,
        }  # fmt: skip


def null_ratio(fl_arm: Mapping, null_arm: Mapping, null_runs_by_lr: Mapping) -> dict | None:
    """FL's per-layer divergence after round 1 over the null reference's (``mode='independent'``:
    K SGD runs from the same initialization on all the data, never averaged, as many steps; E7),
    per layer kernel: ``relative`` (``D_l``) and ``update`` (``U_l``). Both arms' runs after round
    1 are compared, seeds paired, the null taken at FL's chosen learning rate when it ran there
    (else at its own). A ratio near 1 says a layer's drift is what SGD noise alone gives; above 1,
    what splitting the data adds. None without divergence rows."""
    lr = fl_arm["chosen_lr"] if fl_arm["chosen_lr"] in null_runs_by_lr else null_arm["chosen_lr"]
    fl_div, null_div = fl_arm.get("divergence"), layer_divergence(null_runs_by_lr[lr])
    if not fl_div or not null_div or fl_div["layers"] != null_div["layers"]:
        return None
    out = {"layers": fl_div["layers"], "null_lr": lr}
    for metric in ("relative", "update"):
        fl_v = np.asarray(fl_div[f"{metric}_round1"], float)
        null_v = np.asarray(null_div[f"{metric}_round1"], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[metric] = [float(x) for x in fl_v / null_v]
    return out


def layer_divergence(runs: Sequence[Mapping]) -> dict | None:
    """The scale-free per-layer divergence of an arm's runs (the seeds at its chosen learning rate)
    after round 1 and after the last round: per metric and layer kernel (``[L]``, input side
    first), the mean over seeds; and per seed (``[seeds]``) the mean over convolution/hidden layers
    and the head apart (the head's dispersion differs in kind: it maps features to classes). None
    without divergence rows.

    Metrics (``fedjax_deep.metrics.divergence``): ``update`` is ``U_l``, the clients' update
    dispersion relative to their mean update's size (``1 - 1/C`` for updates with no shared
    direction, 0 when they agree); ``cosine`` the mean pairwise cosine of client updates;
    ``grad`` the dispersion of the clients' gradients at the shared model; ``cka``, where the run
    logged it (``fl.cka_probe``), the mean pairwise linear CKA of the clients' layer activations
    (a similarity: 1 = the same representation)."""
    layers = list((runs[0].get("run_info") or {}).get("layers") or [])
    usable = [r for r in runs if not r["stopped"] and r["rows"]]
    if (
        not layers
        or not usable
        or f"divergence/{layers[0]}/kernel/update" not in usable[0]["rows"][0]
    ):
        return None
    out = {"layers": layers}
    for when, index in (("round1", 0), ("last", -1)):
        for metric in (*SCALE_FREE, "relative", "cka"):
            suffix = "cka" if metric == "cka" else f"kernel/{metric}"
            keys = [f"divergence/{layer}/{suffix}" for layer in layers]
            if metric == "cka" and not all(k in usable[0]["rows"][0] for k in keys):
                # Not logged (fl.cka_probe = 0), or logged per block (a ResNet's representations
                # are its stem and blocks, not its kernels): metrics.jsonl has those.
                continue
            per_seed = np.asarray([[r["rows"][index].get(k, math.nan) for k in keys] for r in usable],
                                  float)  # fmt: skip
            body = [i for i, layer in enumerate(layers) if layer != "head"]
            with warnings.catch_warnings():  # a metric a mode does not log (grad: the null)
                warnings.simplefilter("ignore", RuntimeWarning)
                out[f"{metric}_{when}"] = [float(x) for x in np.nanmean(per_seed, 0)]
                out[f"{metric}_{when}_body_per_seed"] = [
                    float(np.nanmean(row[body])) for row in per_seed
                ]
            if "head" in layers:
                out[f"{metric}_{when}_head_per_seed"] = [float(row[layers.index("head")])
                                                          for row in per_seed]  # fmt: skip
    return out


def arms_with(result: Mapping, key: str):
    """``(group value, arm name, arm, arm[key])`` for every arm of a comparison that holds a value
    at ``key`` (divergence, null ratio), in order."""
    for gv, arms in result["groups"].items():
        for name, a in arms.items():
            if a.get(key):
                yield gv, name, a, a[key]


# -- markdown -------------------------------------------------------------------------------------


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    return [_row(head), "|" + "---|" * len(head), *(_row(r) for r in rows)]


def _spread(d: Mapping, key: str) -> str:
    """A per-seed divergence list as mean ± t-interval, 3 decimals."""
    return fmt_stat(interval([v for v in d.get(key) or [] if math.isfinite(v)]), 1.0, 3)


def _reach(stat: Mapping) -> str:
    never = stat["not_reached"]
    return fmt_stat(stat, 1.0) + (f" ({never} never)" if never else "")


def _certified(a: Mapping) -> str:
    """``'3/5'``: seeds whose plateau is certified at their last evaluation."""
    done = sum(p["plateau"]["certified"] for p in a["per_seed"].values())
    return f"{done}/{len(a['per_seed'])}"


def _rising(a: Mapping) -> str:
    """The uncertified seeds with their last window's gain (the certifying statistic, at least the
    tolerance: the mean of the last window minus the one before, in points), or why none."""
    rising = [(s, p["plateau"]) for s, p in a["per_seed"].items() if not p["plateau"]["certified"]]
    return ", ".join(f"{s}: {r['gain']:+.1f}" if math.isfinite(r["gain"] or math.nan)
                     else f"{s}: {r['reason']}" for s, r in rising) or "none"  # fmt: skip


def plateau_table(result: Mapping) -> list[str]:
    """Per arm: the end value, certified seeds, the still-rising seeds and their slopes, the
    saturating fit's asymptote (seeds fitted) and, against the reference, the paired asymptote gap,
    what the end-value gap measures and the extension rule's verdict (the null reference, one
    round by design, is left out)."""
    g = result["group"].rsplit(".", 1)[-1]
    head = [g, "arm", "end value (test, %)", "certified", "still rising (seed: window gain)",
            "asymptote (fit, %)", "asymptote gap vs reference", "end-value gap reads as",
            "extension rule"]  # fmt: skip
    rows = []
    for gv, arms in result["groups"].items():
        for name, a in arms.items():
            if "asymptote" not in a or a.get("role") == NULL:  # the null runs one round
                continue
            fitted = a["asymptote"]["n"]
            rows.append([gv, name, fmt_stat(a["final"]), _certified(a), _rising(a),
                         f"{fmt_stat(a['asymptote'], 1.0)} ({fitted}/{len(a['per_seed'])} fitted)",
                         fmt_gap(a["asymptote_gap"], 1.0) if "asymptote_gap" in a else "",
                         a.get("reading", "(reference)" if "gap" not in a else ""),
                         a.get("extension", {}).get("verdict", "")])  # fmt: skip
    if not rows:
        return []
    w, tol = result.get("plateau_window", 10), result.get("tol", 0.005)
    return ["", f"Plateaus: a seed is certified when the mean of its last {w} evaluations exceeds "
            f"the mean of the {w} before by less than {100 * tol:g} points at its last round; a "
            "still-rising seed shows that gain (points). The asymptote is a + b exp(-r / tau) fitted per "
            "seed (a fit whose tau sits at a bound gives none). A gap measured while either arm "
            "still rises reads as speed, not final accuracy. Extension rule: an arm with an "
            f"uncertified seed is resumed {EXTEND_STEP} rounds further, up to {EXTEND_CAP} "
            "rounds.", "", *_table(head, rows)]  # fmt: skip


def _speed_mark(text: str, arms: Mapping, name: str, ref: str) -> str:
    """``text`` marked ``†`` when the arm or the reference it is measured against still rises."""
    if (
        text == "-"
        or ref not in arms
        or "plateau" not in next(iter(arms[name]["per_seed"].values()))
    ):
        return text
    return text + " †" if still_rising(arms[name]) or still_rising(arms[ref]) else text


def _reference_names(result: Mapping) -> list[str]:
    """The groups' reference arms' names, each once (what every other arm's ``gap`` is against)."""
    return [n for n in dict.fromkeys((result.get("reference_arms") or {}).values()) if n]


def role_table(result: Mapping) -> list[str]:
    """The headline table (the main job's, as the README shows it): per group, each arm's plateau
    accuracy (its learning rate in brackets), every reference-role arm minus every other arm, and
    the other arms' rounds to 80% of the reference and certified seeds. Empty when no arm has a
    gap, or when more than two arms are compared against the references (read the arm table)."""
    arms_of = [arms for arms in result["groups"].values()]
    refs = list(dict.fromkeys(n for arms in arms_of for n, a in arms.items()
                              if a.get("role") in REFERENCE_ROLES))  # fmt: skip
    primary = _reference_names(result)
    refs = [*[n for n in primary if n in refs], *[n for n in refs if n not in primary]]
    others = list(dict.fromkeys(n for arms in arms_of for n, a in arms.items()
                                if "gaps" in a and a.get("role") not in REFERENCE_ROLES))  # fmt: skip
    if not others or len(others) > 2:
        return []
    ref_name = primary[0] if len(primary) == 1 else "reference"
    head = [result["group"].rsplit(".", 1)[-1], *refs, *others,
            *(f"{r} - {o}" for o in others for r in refs),
            *(h for o in others for h in (f"{o} rounds to 80% of {ref_name}", f"{o} certified"))]  # fmt: skip
    rows = []
    for gv, arms in result["groups"].items():
        cells = [gv] + [
            f"{fmt_stat(arms[n]['final'])} ({arms[n]['chosen_lr']:g})" if n in arms else "-"
            for n in (*refs, *others)
        ]
        cells += [_ends_mark(_speed_mark(fmt_gap((arms[o].get("gaps") or {}).get(r)), arms, o, r),
                             (arms[o].get("gaps") or {}).get(r))
                  if o in arms else "-" for o in others for r in refs]  # fmt: skip
        for o in others:
            a = arms.get(o) or {}
            cells += [_reach(a["rounds_to_80"]) if "rounds_to_80" in a else "-",
                      _certified(a) if a else "-"]  # fmt: skip
        rows.append(cells)
    return [
        "Each arm by role at its own learning rate (chosen on "
        + ("test" if result.get("tuned_on") == "test" else "validation")
        + " accuracy, in brackets): "
        "test accuracy at the end (mean of the last evaluations) in %, gaps in points (n.r.: the "
        "95% paired t-interval over seeds includes 0); certified: seeds whose plateau holds at "
        f"their last round; †: a gap measured while either arm still rises ({SPEED}); ‡: the "
        "two arms end at different rounds (one was extended): read them at one round with "
        "`--at-round`.",
        "",
        *_table(head, rows),
        "",
    ]


def markdown(result: Mapping) -> str:
    """The comparison as markdown (accuracies and gaps in points, 95% paired t-intervals over
    seeds): the headline table by role, every arm, divergence, CKA, the null ratio, then the
    learning-rate grids."""
    g = result["group"].rsplit(".", 1)[-1]
    primary = set(_reference_names(result))
    extra = list(dict.fromkeys(n for arms in result["groups"].values() for a in arms.values()
                               for n in a.get("gaps") or {} if n not in primary))  # fmt: skip
    on = result.get("tuned_on", "val")
    head = [g, "arm", f"lr (chosen on {on})", "test acc (end)", "certified seeds",
            "gap vs reference", "resolved", *(f"gap vs {n}" for n in extra),
            "rounds to 50% of ref", "rounds to 80% of ref", "area gap", "seeds"]  # fmt: skip
    rows = []
    for gv, arms in result["groups"].items():
        for name, a in arms.items():
            cells = [gv, name, f"{a['chosen_lr']:g}", fmt_stat(a["final"]), _certified(a)]
            if "gap" in a:
                speed = f" ({SPEED})" if a.get("reading") == SPEED else ""
                cells += [_ends_mark(fmt_stat(a["gap"]) + speed, a["gap"]),
                          "yes" if a["gap"]["resolved"] else "no"]  # fmt: skip
            elif a.get("role") == NULL:
                cells += ["(null reference: its divergence after round 1)", ""]
            elif "gaps" in a:
                cells += ["-", ""]  # no arm of its group matches the reference
            else:
                cells += ["(reference)", ""]
            cells += [_ends_mark(fmt_gap(a["gaps"].get(n)), a["gaps"].get(n))
                      if n in a.get("gaps", {}) else "" for n in extra]  # fmt: skip
            if "gap" in a:
                cells += [_reach(a["rounds_to_50"]), _reach(a["rounds_to_80"]),
                          fmt_stat(a["area_gap"])]  # fmt: skip
            else:
                cells += ["", "", ""]
            rows.append([*cells, len(a["per_seed"])])
    reference = ", ".join(f"{k}={v}" for k, v in result["reference"].items())
    lines = [*role_table(result),
             f"Every arm; the reference is the arm with {reference} in each group"
             + (f" ({', '.join(sorted(primary))})" if primary else "")
             + "; gaps are a reference minus the arm:", "", *_table(head, rows),
             *plateau_table(result)]  # fmt: skip
    div_head = [g, "arm", "U body (round 1)", "U body (last)", "U head (last)",
                "cosine body (last)", "cosine head (last)", "grad div body (round 1)"]  # fmt: skip
    div_rows = [
        [gv, name, *(_spread(d, k) for k in (
            "update_round1_body_per_seed", "update_last_body_per_seed",
            "update_last_head_per_seed", "cosine_last_body_per_seed",
            "cosine_last_head_per_seed", "grad_round1_body_per_seed"))]
        for gv, name, _, d in arms_with(result, "divergence")
    ]  # fmt: skip
    if div_rows:
        lines += ["", "Scale-free divergence at the chosen learning rate (mean over seeds ± 95% "
                  "t-interval; body = the mean over the layers before the head; U = update "
                  "dispersion, 1 - 1/C for updates with no shared direction):", "",
                  *_table(div_head, div_rows)]  # fmt: skip
    cka_rows = [
        [gv, name, *(_spread(d, k) for k in (
            "cka_round1_body_per_seed", "cka_last_body_per_seed", "cka_last_head_per_seed")),
         ", ".join(f"{x:.2f}" for x in d["cka_last"])]
        for gv, name, _, d in arms_with(result, "divergence") if "cka_last" in d
    ]  # fmt: skip
    if cka_rows:
        cka_head = [g, "arm", "CKA body (round 1)", "CKA body (last)", "CKA head (last)",
                    "CKA per layer (last, input side first)"]  # fmt: skip
        lines += ["", "Representation similarity between client models at the chosen learning "
                  "rate: mean pairwise linear CKA of their layer activations on a fixed probe "
                  "batch (1 = the same representation up to rotation and scale; mean over seeds "
                  "± 95% t-interval):", "", *_table(cka_head, cka_rows)]  # fmt: skip
    ratio_lines = [
        f"- {g}={gv}, {name}, {what}: " + ", ".join(f"{x:.2f}" for x in r[metric])
        for gv, name, _, r in arms_with(result, "null_ratio")
        for metric, what in (("relative", "D_l"), ("update", "U_l"))
    ]
    if ratio_lines:
        lines += ["", "FL over the null reference (K SGD runs from the same initialization on all "
                  "the data, never averaged, as many steps), per layer after round 1, input side "
                  "first, the head last; 1 = no more drift than SGD noise alone:", "",
                  *ratio_lines]  # fmt: skip
    if result.get("at_round"):
        names = result.get("short") or []
        lines = [f"**Every run read at round {result['at_round']}** (`--at-round`: rows after it "
                 "are dropped, so arms extended past it are compared at it)"
                 + (f"; {len(names)} run(s) that end before it left out: "
                    + ", ".join(f"`{n}`" for n in names) if names else "") + ".", "", *lines]  # fmt: skip
    if result.get("unfinished"):
        names = result["unfinished"]
        lines = [f"**{len(names)} unfinished run(s) left out** (still training, interrupted or "
                 "being extended; rerun the sweep's command to finish them): "
                 + ", ".join(f"`{n}`" for n in names), "", *lines]  # fmt: skip
    if on == "test":
        lines = ["**Tuned on test accuracy** (`--tune-on test`: the runs hold no validation "
                 "split): each rate was chosen on the accuracy reported here, so the accuracies "
                 "and gaps are optimistic.", "", *lines]  # fmt: skip
    lines += ["", f"Learning-rate grids (mean {'validation' if on == 'val' else 'test'} accuracy "
              "at the plateau, per arm; -inf: a seed stopped on non-finite values):", ""]  # fmt: skip
    for gv, arms in result["groups"].items():
        for name, a in arms.items():
            grid = ", ".join(f"{lr:g}: {m * 100:.1f}" if math.isfinite(m) else f"{lr:g}: -inf"
                             for lr, m in a["grid"].items())  # fmt: skip
            warn = f" **{a['grid_warning']}**" if a["grid_warning"] else ""
            lines.append(f"- {g}={gv}, {name}: {grid} -> {a['chosen_lr']:g}{warn}")
    return "\n".join(lines) + "\n"


# -- files ----------------------------------------------------------------------------------------


def write_comparison(sweep_dirs, out_dir, **kwargs) -> os.PathLike:
    """:func:`compare` written out: ``compare.md``, ``compare.json`` (its sweeps' paths relative
    to ``out_dir``), ``curves.png`` and, where logged, ``divergence.png``, ``cka.png`` and
    ``null_ratio.png`` (more than six groups: ``curves_2.png``, ...); returns the path of
    ``compare.md``."""
    import json
    import pathlib

    from fedjax_deep.analysis import plots

    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out={str(out_dir)!r} is a file; give a directory for compare.md, "
                         "compare.json and the plots")  # fmt: skip
    result = compare(sweep_dirs, **kwargs)
    # Paths as seen from the results, so that a committed compare.json names no machine's folders.
    result["sweeps"] = [pathlib.Path(os.path.relpath(pathlib.Path(d).resolve(), out.resolve()))
                        .as_posix() for d in result["sweeps"]]  # fmt: skip
    # Everything is computed before the first file is written; the text files come last, so
    # that compare.md exists only when the whole analysis did.
    texts = {"compare.json": json.dumps(plain(result), indent=1) + "\n",
             "compare.md": markdown(result)}  # fmt: skip
    check_writable(
        out,
        [*texts, "curves.png", "divergence.png", "cka.png", "null_ratio.png"],
        "make it writable, or pass --out another directory",
    )
    try:
        plots.plot_curves(result, out / "curves.png")
        plots.plot_divergence(result, out / "divergence.png")
        plots.plot_divergence(result, out / "cka.png", metric="cka")
        plots.plot_null_ratio(result, out / "null_ratio.png")
        for name, text in texts.items():
            (out / name).write_text(text)
    except OSError as e:
        raise InputError(f"{e.filename or out} cannot be written ({e.strerror or e}); make it "
                         "writable, or pass --out another directory") from None  # fmt: skip
    return out / "compare.md"


def plain(value):
    """``value`` as plain JSON: string keys, non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
