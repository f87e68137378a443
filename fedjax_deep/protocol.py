"""The comparison protocol: how an arm's learning rate is chosen, when training has plateaued, and
the paired statistics a report states. Decided before any outcome is looked at (issue 14).

- **Tuning.** Each arm (FL, CL, steps-matched CL, ...) picks its own learning rate from a stated
  grid by its *validation* accuracy at the plateau (mean of :func:`plateau_value` over the seeds
  that every rate of the grid ran: seeds added later at the chosen rate confirm, never choose),
  never by test accuracy (``data.validation_fraction`` carves the validation split). A run that
  stopped on non-finite values scores ``-inf``. Ties go to the smaller learning rate.
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
  share seeds (same data split, partition and initialization) and its t-interval;
  :func:`seeds_needed`: how many seeds resolve a difference of a given size at a measured spread.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from fedjax_deep.config import parse_reference  # noqa: F401  (the CLI's and train's entry)
from fedjax_deep.report import dict_field, figure_legend, fmt_ci, panel_grid

WINDOW = 5  # evaluations
TOL = 0.005  # accuracy (half a point)


def curve(rows: Sequence[Mapping], key: str = "eval/accuracy") -> tuple[np.ndarray, np.ndarray]:
    """``(rounds, values)`` of the rows that hold ``key`` (rounds in order)."""
    pairs = [(r["round"], r[key]) for r in rows if r.get(key) is not None]
    if not pairs:
        return np.zeros(0, int), np.zeros(0)
    rounds, values = zip(*pairs, strict=True)
    return np.asarray(rounds, int), np.asarray(values, float)


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


def t_quantile(n: int, level: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, n - 1))


def paired_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict:
    """``a - b`` over paired seeds: mean, t-interval half-width, standard deviation, count, the
    per-seed differences, and whether the interval excludes 0. Pairs with a missing value are
    dropped (and counted apart)."""
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
    """One arm's values over seeds: :func:`paired_interval` against zero (mean and t-interval)."""
    return paired_interval(values, [0.0] * len(values), level)


def seeds_needed(sd: float, half_width: float, level: float = 0.95, most: int = 1000) -> int:
    """The fewest seeds whose paired t-interval has half-width <= ``half_width`` at standard
    deviation ``sd`` of the differences (at least 2)."""
    for n in range(2, most + 1):
        if t_quantile(n, level) * sd / math.sqrt(n) <= half_width:
            return n
    return most


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


# -- a tuned comparison read back from a sweep's run directories -------------------------------


def load_runs(sweep_dir) -> tuple[dict, list[dict]]:
    """The sweep's config and every point's ``{'config', 'rows', 'stopped'}``, including points
    that stopped on non-finite values (they have rows but no summary)."""
    import pathlib

    from fedjax_deep.runlog import RunDir, read_config

    sweep_dir = pathlib.Path(sweep_dir)
    runs = []
    for path in sorted(p.parent for p in sweep_dir.glob("*/config.json")):
        d = RunDir(path, writer=False)
        summary = d.read_json("summary.json")
        runs.append({"name": path.name, "config": d.read_json("config.json", required="rerun it"),
                     "run_info": d.read_json("run_info.json") or {},
                     "rows": d.read_rows(), "stopped": summary is None})  # fmt: skip
    return read_config(sweep_dir), runs


def _sort_key(value):
    """Numbers in order, then labels with their numbers compared as numbers (depth=8 before 16)."""
    import re

    if isinstance(value, int | float):
        return (0, value, "")
    parts = re.split(r"(-?\d+\.?\d*)", str(value))
    return (1, 0, [(0, float(p), "") if re.fullmatch(r"-?\d+\.?\d*", p) else (1, 0, p)
                   for p in parts if p])  # fmt: skip


def _value(config: Mapping, field: str):
    """``field`` of a run's config; a run made before the field existed ran at its default."""
    try:
        return dict_field(config, field)
    except (KeyError, TypeError):
        from fedjax_deep.config import FIELDS

        if field not in FIELDS:
            raise
        default = FIELDS[field].default
        return list(default) if isinstance(default, tuple) else default


def compare(
    sweep_dirs,
    *,
    group: str | Sequence[str] = "model.depth",
    tune: str = "client_opt.learning_rate",
    reference: Mapping[str, object] | None = None,
    window: int = WINDOW,
    tol: float = TOL,
) -> dict:
    """Every arm of one or several sweeps at its own tuned learning rate, against the reference
    arm, per value of ``group``, with seeds paired.

    ``sweep_dirs`` is one sweep's workdir or several (a control sweep read together with the
    baseline sweep it shares seeds with: the same seed gives the same split, partition and
    initialization). ``group`` is a field or several (comma-separated): each combination of their
    values is one group with its own reference arm (the CL of the same architecture, say). The
    swept fields other than ``group``, ``tune`` and ``seed`` name the arms (``mode``, say, or
    ``mode`` and local steps). For each group and arm: the learning rate chosen on validation
    accuracy (:func:`choose_learning_rate`, each arm alone), and at that rate, per seed, the test
    plateau value, the plateau round, the curve area and the rounds to reach 50% and 80% of the
    reference arm's plateau value on the same seed; for arms other than the reference, the paired
    differences (reference minus arm) of the plateau value and the curve area.
    """
    reference = dict(reference or {"mode": "centralized"})
    group_fields = [g.strip() for g in group.split(",")] if isinstance(group, str) else list(group)
    if isinstance(sweep_dirs, str | bytes) or not isinstance(sweep_dirs, Sequence):
        sweep_dirs = [sweep_dirs]
    fields, runs = [], []
    for sweep_dir in sweep_dirs:
        sweep_config, sweep_runs = load_runs(sweep_dir)
        runs += sweep_runs
        for entry_fields, _ in sweep_config["sweep"]:
            for f in [entry_fields] if isinstance(entry_fields, str) else entry_fields:
                if f not in fields:
                    fields.append(f)
    arm_fields = [f for f in fields if f not in (*group_fields, tune, "seed")]
    group_values = {f: {str(_value(r["config"], f)) for r in runs} for f in group_fields}
    shown = [f for f in group_fields if len(group_values[f]) > 1] or group_fields[:1]
    table: dict = {}
    for run in runs:
        c = run["config"]
        if len(group_fields) == 1:
            g = _value(c, group_fields[0])
        else:
            g = ", ".join(f"{f.rsplit('.', 1)[-1]}={_value(c, f)}" for f in shown)
        key = (g, tuple((f, _value(c, f)) for f in arm_fields))
        table.setdefault(key, {}).setdefault(_value(c, tune), {})[c["seed"]] = run
    group_name = group_fields[0] if len(group_fields) == 1 else "group"
    out = {"group": group_name, "group_fields": group_fields, "tune": tune, "reference": reference,
           "window": window, "tol": tol, "sweeps": [str(d) for d in sweep_dirs], "groups": {}}  # fmt: skip
    # Arms are named by the fields that tell them apart (short names unless two would clash).
    varying = [f for f in arm_fields if len({str(_value(r["config"], f)) for r in runs}) > 1]
    shorts = [f.rsplit(".", 1)[-1] for f in varying]
    label = {f: (f if shorts.count(short) > 1 else short)
             for f, short in zip(varying, shorts, strict=True)}  # fmt: skip
    order = sorted(table.items(), key=lambda kv: (_sort_key(kv[0][0]), str(kv[0][1])))
    null_runs: dict = {}
    for (g, arm), by_lr in order:
        # Tuning compares the rates on the seeds every rate ran (extra seeds run later at the
        # chosen rate only, to confirm, cannot move the choice).
        tuning_seeds = sorted(set.intersection(*(set(b) for b in by_lr.values())))
        scores = {}
        for lr, by_seed in by_lr.items():
            scores[lr] = [
                None if by_seed[s]["stopped"]
                else plateau_value(curve(by_seed[s]["rows"], "val/accuracy")[1], window)
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
                "plateau_round": plateau_round(rounds, acc, window, tol),
                "area": curve_area(rounds, acc, dict_field(run["config"], "num_rounds")),
                "rounds": rounds.tolist(),
                "accuracy": acc.tolist(),
            }
        arm_name = ", ".join(f"{label[f]}={v}" for f, v in arm if f in label) or "run"
        if dict(arm).get("mode") == "independent":  # the null reference: every rate it ran at
            null_runs[g] = {lr: list(by_seed.values()) for lr, by_seed in by_lr.items()}
        out["groups"].setdefault(g, {})[arm_name] = {
            "arm": dict(arm), "chosen_lr": chosen, "grid": dict(sorted(means.items())),
            "grid_warning": grid_edge(chosen, list(means)), "per_seed": per_seed,
            "tuning_seeds": tuning_seeds,
            "divergence": layer_divergence([by_lr[chosen][s] for s in seeds]),
        }  # fmt: skip
    for g, arms in out["groups"].items():
        ref = next((a for a in arms.values()
                    if all(str(a["arm"].get(k)) == str(v) for k, v in reference.items())),
                   None)  # fmt: skip
        nulls = {name: a for name, a in arms.items() if a["arm"].get("mode") == "independent"}
        for a in arms.values():
            seeds = sorted(a["per_seed"])
            finals = [a["per_seed"][s]["final"] for s in seeds]
            a["final"] = interval(finals)
            if a["arm"].get("mode") == "fl" and nulls:
                a["null_ratio"] = null_ratio(a, next(iter(nulls.values())), null_runs[g])
            if ref is None or a is ref or a["arm"].get("mode") == "independent":
                continue
            common = [s for s in seeds if s in ref["per_seed"]]
            rf = [ref["per_seed"][s]["final"] for s in common]
            a["gap"] = paired_interval(rf, [a["per_seed"][s]["final"] for s in common])
            a["area_gap"] = paired_interval([ref["per_seed"][s]["area"] for s in common],
                                            [a["per_seed"][s]["area"] for s in common])  # fmt: skip
            for frac in (0.5, 0.8):
                hit = []
                for s, target in zip(common, rf, strict=True):
                    p = a["per_seed"][s]
                    r = None if target is None else rounds_to(
                        np.asarray(p["rounds"]), np.asarray(p["accuracy"]), frac * target)  # fmt: skip
                    hit.append(r)
                reached = [float(r) for r in hit if r is not None]
                a[f"rounds_to_{int(frac * 100)}"] = {
                    **interval(reached),
                    "not_reached": sum(r is None for r in hit), "per_seed": hit,
                }  # fmt: skip
    return out


SCALE_FREE = ("update", "cosine", "grad")  # U_l, the mean update cosine, gradient divergence


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
    after round 1 and after the last round: per metric and layer kernel (input side first), the
    mean over seeds; and per seed the mean over convolution/hidden layers and the head apart (the
    head's dispersion differs in kind: it maps features to classes). None without divergence rows.

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


def _fmt(stat: Mapping | None, scale: float = 100.0) -> str:
    return fmt_ci(stat["mean"], stat["half"], scale) if stat else "-"


def _fmt3(d: Mapping, key: str) -> str:
    stat = interval([v for v in d.get(key) or [] if math.isfinite(v)])
    return fmt_ci(stat["mean"], stat["half"], 1.0, digits=3)


def markdown(result: Mapping) -> str:
    """The comparison as a markdown table (accuracies and gaps in points, 95% paired t-intervals
    over seeds), then the learning-rate grids."""
    g = result["group"].rsplit(".", 1)[-1]
    head = [g, "arm", "lr (chosen on val)", "test acc (plateau)", "plateaued seeds",
            "gap vs reference", "resolved", "rounds to 50% of ref", "rounds to 80% of ref",
            "area gap", "seeds"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for gv, arms in result["groups"].items():
        for name, a in arms.items():
            plateaued = sum(p["plateau_round"] is not None for p in a["per_seed"].values())
            cells = [str(gv), name, f"{a['chosen_lr']:g}", _fmt(a["final"]),
                     f"{plateaued}/{len(a['per_seed'])}"]  # fmt: skip
            if "gap" in a:
                r50, r80 = a["rounds_to_50"], a["rounds_to_80"]
                cells += [
                    _fmt(a["gap"]), "yes" if a["gap"]["resolved"] else "no",
                    _fmt(r50, 1) + (f" ({r50['not_reached']} never)" if r50["not_reached"] else ""),
                    _fmt(r80, 1) + (f" ({r80['not_reached']} never)" if r80["not_reached"] else ""),
                    _fmt(a["area_gap"]),
                ]  # fmt: skip
            elif a["arm"].get("mode") == "independent":
                cells += ["(null reference: its divergence after round 1)", "", "", "", ""]
            else:
                cells += ["(reference)", "", "", "", ""]
            cells.append(str(len(a["per_seed"])))
            lines.append("| " + " | ".join(cells) + " |")
    div_head = [g, "arm", "U body (round 1)", "U body (last)", "U head (last)",
                "cosine body (last)", "cosine head (last)", "grad div body (round 1)"]  # fmt: skip
    div_lines = [
        "| " + " | ".join([str(gv), name] + [_fmt3(d, k) for k in (
            "update_round1_body_per_seed", "update_last_body_per_seed",
            "update_last_head_per_seed", "cosine_last_body_per_seed",
            "cosine_last_head_per_seed", "grad_round1_body_per_seed")]) + " |"
        for gv, name, _, d in arms_with(result, "divergence")
    ]  # fmt: skip
    if div_lines:
        lines += ["", "Scale-free divergence at the chosen learning rate (mean over seeds ± 95% "
                  "t-interval; body = the mean over the layers before the head; U = update "
                  "dispersion, 1 - 1/C for updates with no shared direction):", "",
                  "| " + " | ".join(div_head) + " |", "|" + "---|" * len(div_head), *div_lines]  # fmt: skip
    cka_lines = [
        "| " + " | ".join([str(gv), name] + [_fmt3(d, k) for k in (
            "cka_round1_body_per_seed", "cka_last_body_per_seed", "cka_last_head_per_seed")]
            + [", ".join(f"{x:.2f}" for x in d["cka_last"])]) + " |"
        for gv, name, _, d in arms_with(result, "divergence") if "cka_last" in d
    ]  # fmt: skip
    if cka_lines:
        head = [g, "arm", "CKA body (round 1)", "CKA body (last)", "CKA head (last)",
                "CKA per layer (last, input side first)"]  # fmt: skip
        lines += ["", "Representation similarity between client models at the chosen learning "
                  "rate: mean pairwise linear CKA of their layer activations on a fixed probe "
                  "batch (1 = the same representation up to rotation and scale; mean over seeds "
                  "± 95% t-interval):", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head), *cka_lines]  # fmt: skip
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
    lines += ["", "Learning-rate grids (mean validation accuracy at the plateau, per arm; "
              "-inf: a seed stopped on non-finite values):", ""]  # fmt: skip
    for gv, arms in result["groups"].items():
        for name, a in arms.items():
            grid = ", ".join(f"{lr:g}: {m * 100:.1f}" if math.isfinite(m) else f"{lr:g}: -inf"
                             for lr, m in a["grid"].items())  # fmt: skip
            warn = f" **{a['grid_warning']}**" if a["grid_warning"] else ""
            lines.append(f"- {g}={gv}, {name}: {grid} -> {a['chosen_lr']:g}{warn}")
    return "\n".join(lines) + "\n"


def plot_curves(result: Mapping, path) -> None:
    """Test accuracy against round at each arm's chosen learning rate: the mean over seeds and a
    band from the lowest to the highest seed, one panel per group value; legend outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(result["groups"].items())
    fig, axes = panel_grid(len(groups), 3.2, 3.0, 2.0)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = sorted({n for _, arms in groups for n in arms})
    for ax, (gv, arms) in zip(axes.flat, groups, strict=False):
        for k, (name, a) in enumerate(arms.items()):
            curves = [np.asarray(p["accuracy"]) * 100 for p in a["per_seed"].values()]
            length = min(len(c) for c in curves)
            if length == 0:
                continue
            stack = np.stack([c[:length] for c in curves])
            rounds = np.asarray(next(iter(a["per_seed"].values()))["rounds"][:length])
            color = colors[names.index(name) % len(colors)]
            ax.plot(rounds, stack.mean(0), color=color, label=name)
            ax.fill_between(rounds, stack.min(0), stack.max(0), color=color, alpha=0.2)
            # Each panel's own chosen learning rates, bottom right (where late curves are not).
            ax.text(0.97, 0.04 + 0.07 * k, f"lr {a['chosen_lr']:g}",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color=color)  # fmt: skip
        title = (
            str(gv)
            if result["group"] == "group"
            else f"{result['group'].rsplit('.', 1)[-1]} = {gv}"
        )
        ax.set_title(textwrap.fill(title, 42), fontsize=7)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("test accuracy (%)\nmean; band: seed range")
    figure_legend(fig, axes)  # every arm once, whichever panel it appears in
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_divergence(result: Mapping, path, metric: str = "update") -> bool:
    """Per-layer scale-free divergence (``metric`` after round 1 and after the last round)
    against relative depth ``l / L``, one line per group value, for every arm that logs it;
    returns False when no arm does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [(gv, name, d) for gv, name, _, d in arms_with(result, "divergence")
             if f"{metric}_round1" in d]  # fmt: skip
    if not lines:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    cmap = plt.get_cmap("viridis")
    # Colour says the group (depth, say), line style the arm (FL, the null reference, ...).
    group_values = list(dict.fromkeys(gv for gv, _, _ in lines))
    arm_names = list(dict.fromkeys(name for _, name, _ in lines))
    styles = ("-o", "--s", ":^", "-.v")
    for gv, name, d in lines:
        n = len(d["layers"])
        x = [(i + 1) / n for i in range(n)]
        color = cmap(group_values.index(gv) / max(1, len(group_values) - 1))
        style = styles[arm_names.index(name) % len(styles)]
        for ax, when in zip(axes, ("round1", "last"), strict=True):
            ax.plot(x, d[f"{metric}_{when}"], style, ms=3, color=color,
                    label=f"{result['group'].rsplit('.', 1)[-1]}={gv} ({name})")  # fmt: skip
    for ax, title in zip(axes, ("after round 1", "after the last round"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("relative depth l / L (the head is at 1)")
        ax.grid(alpha=0.3)
    what = {"update": "U_l (update dispersion)", "cka": "linear CKA between clients"}
    axes[0].set_ylabel(f"{what.get(metric, metric)}, mean over seeds")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def plot_null_ratio(result: Mapping, path) -> bool:
    """FL's per-layer ``D_l`` and ``U_l`` after round 1 over the null reference's, against
    relative depth, one line per group; returns False when no arm has a null reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [(gv, name, r) for gv, name, _, r in arms_with(result, "null_ratio")]
    if not lines:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    cmap = plt.get_cmap("viridis")
    for k, (gv, name, r) in enumerate(lines):
        n = len(r["layers"])
        x = [(i + 1) / n for i in range(n)]
        for ax, metric in zip(axes, ("relative", "update"), strict=True):
            ax.plot(x, r[metric], "-o", ms=3, color=cmap(k / max(1, len(lines) - 1)),
                    label=f"{result['group'].rsplit('.', 1)[-1]}={gv} ({name})")  # fmt: skip
    for ax, what in zip(axes, ("D_l (relative dispersion)", "U_l (update dispersion)"),
                        strict=True):  # fmt: skip
        ax.axhline(1, color="gray", lw=0.8)
        ax.set_title(f"FL / null: {what}, after round 1", fontsize=9)
        ax.set_xlabel("relative depth l / L (the head is at 1)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("FL over null (mean over seeds)")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def write_comparison(sweep_dirs, out_dir, **kwargs):
    """:func:`compare` written out: ``compare.md``, ``compare.json``, ``curves.png`` and, where
    logged, ``divergence.png``, ``cka.png`` and ``null_ratio.png``; returns the path of ``compare.md``."""
    import json
    import pathlib

    result = compare(sweep_dirs, **kwargs)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(plain(result), indent=1) + "\n")
    (out / "compare.md").write_text(markdown(result))
    plot_curves(result, out / "curves.png")
    plot_divergence(result, out / "divergence.png")
    plot_divergence(result, out / "cka.png", metric="cka")
    plot_null_ratio(result, out / "null_ratio.png")
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
