"""A sweep's report: a markdown table and PNG plots, read back from the runs' files.

The sweep's finished points are grouped by every swept field except ``mode`` and ``seed`` (and the
fields zipped with the seed). For each group the table gives centralized (CL) and federated (FL)
test accuracy after the first and the last round, their gap (CL - FL, in points), and FL's mean
layer divergence (relative dispersion, mean over layer kernels) after the first and the last
round. With several seeds each cell is the mean and a 95% t-interval half-width over seeds.

Plots (:mod:`fedjax_deep.analysis.plots`' style, arms named by role): accuracy against the first
swept field (each role, first and last round); learning curves, one panel per group; FL's
per-layer relative dispersion after round 1 against relative layer depth ``l / L``, one curve per
group; the CL - FL gap against the first swept field (the effect of depth, width, receptive field
or local steps, whichever is swept first); per-layer divergence over rounds of each group's FL
runs (the paper's figure 2a). Runs in ``independent`` mode (K SGD runs from one initialization,
E7) fill the null-divergence column. Each arm at its own tuned learning rate is
:mod:`fedjax_deep.analysis.compare`'s job.
"""

from __future__ import annotations

import math
import pathlib
from collections import defaultdict

import numpy as np

from fedjax_deep.analysis import plots
from fedjax_deep.analysis.runs import (
    CL,
    FL,
    NULL,
    STEPS_MATCHED_CL,
    accuracy_at,
    check_writable,
    field_value,
    read_sweep,
    reference_batch,
    role,
    short_names,
    sweep_entries,
)
from fedjax_deep.analysis.stats import fmt_ci, fmt_sci, mean_ci
from fedjax_deep.errors import InputError
from fedjax_deep.runfiles import METRICS, STOPPED, SUMMARY, read_config, read_json

IGNORED = ("mode", "seed")


def collect(sweep_dir: pathlib.Path) -> tuple[list[str], dict]:
    """Group the sweep's finished runs: ``(group fields, {group values: {mode: [run, ...]}})``."""
    sweep_dir = pathlib.Path(sweep_dir)
    config, runs = read_sweep(sweep_dir)
    fields = []
    for entry in sweep_entries(config):
        # Fields zipped with the seed vary within a group. Fields zipped with the mode (a
        # steps-matched CL arm, an FL-only algorithm) do form groups: FL is paired with the CL
        # of the same group only, and an arm without a partner is shown alone.
        if "seed" not in entry:
            fields += [f for f in entry if f not in IGNORED]
    groups: dict = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run["summary"] is None:  # stopped on non-finite values, or unfinished
            continue
        if not run["rows"]:
            raise InputError(
                f"{sweep_dir / run['name'] / METRICS} holds no rows though {SUMMARY} says the "
                "point finished; restore the file, or rerun the point in another --workdir"
            )
        key = tuple(field_value(run["config"], f) for f in fields)
        groups[key][run["config"]["mode"]].append(run)
    return fields, dict(sorted(groups.items()))


def _paired(cl_runs, fl_runs, index):
    """(CL, FL) accuracies of runs with the same seed."""
    cl_by_seed = {r["config"]["seed"]: accuracy_at(r["rows"], index) for r in cl_runs}
    out = []
    for r in fl_runs:
        c = cl_by_seed.get(r["config"]["seed"])
        f = accuracy_at(r["rows"], index)
        if c is not None and f is not None:
            out.append((c, f))
    return out


def _divergence_ci(runs, index: int) -> str:
    return fmt_sci(*mean_ci([r["rows"][index].get("divergence/mean/relative") for r in runs])[:2])


def sweep_table(fields: list[str], groups: dict) -> str:
    """The markdown table of a sweep (accuracies in percent, gaps in points)."""
    header = short_names(fields) + [
        "model",
        "RF",
        "CL acc (last)",
        "FL acc (last)",
        "gap (last)",
        "CL acc (round 1)",
        "FL acc (round 1)",
        "gap (round 1)",
        "FL divergence (round 1)",
        "FL divergence (last)",
        "null divergence (round 1)",
        "seeds",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, by_mode in groups.items():
        fl, cl = by_mode.get("fl", []), by_mode.get("centralized", [])
        null = by_mode.get("independent", [])
        cells = [_cell(k) for k in key]
        any_run = (fl or cl or null)[0]
        rf = any_run["run_info"].get("receptive_field")
        cells += [_model_label(any_run["config"]["model"]), "-" if rf is None else str(rf)]
        for index in (-1, 0):
            cells += [
                fmt_ci(*mean_ci([accuracy_at(r["rows"], index) for r in cl])[:2], 100),
                fmt_ci(*mean_ci([accuracy_at(r["rows"], index) for r in fl])[:2], 100),
                fmt_ci(*mean_ci([c - f for c, f in _paired(cl, fl, index)])[:2], 100),
            ]
        cells += [_divergence_ci(fl, 0), _divergence_ci(fl, -1), _divergence_ci(null, 0),
                  str(max(len(fl), len(cl), len(null)))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    """A value as one markdown table cell: a ``|`` escaped, line breaks as spaces."""
    return " ".join(str(value).splitlines()).replace("|", "\\|")


def not_finished(sweep_dir: pathlib.Path) -> list[str]:
    """One line per point that holds no summary: the round and the reason of one that stopped on
    non-finite values (its ``stopped.json``), or that it is unfinished."""
    lines = []
    for path in sorted(p.parent for p in pathlib.Path(sweep_dir).glob("*/config.json")):
        if (path / SUMMARY).exists():
            continue
        try:
            stopped = read_json(path / STOPPED)
        except InputError:
            stopped = {}
        if stopped is not None:
            lines.append(f"- `{path.name}`: stopped on non-finite values at round "
                         f"{stopped.get('round', '?')}")  # fmt: skip
        else:
            lines.append(f"- `{path.name}`: unfinished (killed, or still running)")
    return lines


def _model_label(model_cfg: dict) -> str:
    """'plain_cnn-8 w16' (plain nets: depth and width), 'resnet-18 x2' (zoo: width multiplier)."""
    label = f"{model_cfg['name']}-{model_cfg['depth']}"
    if model_cfg["name"].startswith("plain"):
        widths = model_cfg.get("widths") or ()
        return f"{label} w{'/'.join(map(str, widths)) if widths else model_cfg.get('width')}"
    mult = model_cfg.get("width_mult", 1.0)
    return label if mult == 1.0 else f"{label} x{mult:g}"


def _profile(runs, metric: str = "relative", round_index: int = 0) -> list[float]:
    """The mean over runs of their per-layer divergence (``[L]``, input side first)."""
    layers = runs[0]["run_info"]["layers"]
    per_run = [[np.nan if r["rows"][round_index].get(f"divergence/{name}/kernel/{metric}") is None
                else r["rows"][round_index][f"divergence/{name}/kernel/{metric}"]
                for name in layers] for r in runs]  # fmt: skip
    return [float(x) for x in np.nanmean(np.asarray(per_run, float), axis=0)]


def _group_name(fields, key) -> str:
    return ", ".join(f"{f}={k}" for f, k in zip(short_names(fields), key, strict=False))


def plot_sweep(fields: list[str], groups: dict, out_dir: pathlib.Path) -> list[str]:
    """Writes the sweep's PNG plots; returns their file names."""
    plt = plots.pyplot()
    written = []
    if len(fields) > 1:  # several swept fields: each group's values, in order
        label = ", ".join(short_names(fields))
        xs = [", ".join(str(v) for v in k) for k in groups]
    else:
        label = fields[0].rsplit(".", 1)[-1] if fields else "run"
        xs = [k[0] if fields else i for i, k in enumerate(groups)]
    numeric = all(isinstance(x, int | float) for x in xs)
    positions = xs if numeric else list(range(len(xs)))
    batch = reference_batch([r["config"] for m in groups.values() for rs in m.values() for r in rs])

    def with_role(by_mode, r):
        return [run for runs in by_mode.values() for run in runs if role(run["config"], batch) == r]

    fig, ax = plt.subplots(figsize=(6, 4))
    clipped = False
    for r in (CL, STEPS_MATCHED_CL, FL):
        for index, style, when in ((-1, "-o", "last round"), (0, "--s", "round 1")):
            stats = [mean_ci([accuracy_at(run["rows"], index) for run in with_role(m, r)])
                     for m in groups.values()]  # fmt: skip
            means = np.array([s[0] for s in stats]) * 100
            halves = np.nan_to_num(np.array([s[1] for s in stats]) * 100)
            if np.all(np.isnan(means)):
                continue
            # Accuracy lies in [0, 100]; a t-interval of few seeds can reach past it. The bars
            # stop at the bounds, and the axis label says so.
            low, high = np.minimum(halves, means), np.minimum(halves, 100 - means)
            clipped |= bool(np.any((low < halves) | (high < halves)))
            ax.errorbar(positions, means, yerr=np.stack([low, high]), fmt=style,
                        color=plots.ROLE_COLORS[r], capsize=3, label=f"{r}, {when}",
                        alpha=1.0 if index == -1 else 0.6)  # fmt: skip
    seeds = max(len(rs) for by_mode in groups.values() for rs in by_mode.values())
    ylabel = (f"test accuracy (%)\nbars: 95% t-interval over {seeds} seeds"
              + (" (cut at 0 and 100)" if clipped else ""))  # fmt: skip
    written.append(_field_plot(fig, ax, label, xs, positions, ylabel, out_dir / "accuracy.png"))
    written += _plot_curves(fields, groups, batch, out_dir / "learning_curves.png")

    cmap = plt.get_cmap("viridis")
    fl_groups = [(key, by_mode["fl"]) for key, by_mode in groups.items() if by_mode.get("fl")]
    series = [(_group_name(fields, key) or FL, cmap(i / max(len(groups) - 1, 1)), "-o",
               [_profile(runs)]) for i, (key, runs) in enumerate(fl_groups)]  # fmt: skip
    if series:
        written.append(plots.depth_profiles(out_dir / "divergence_profile.png", series,
                                            ["FL clients after round 1"],
                                            "relative dispersion D_l after round 1", log=(0,)))  # fmt: skip

    # E7: FL's per-layer divergence against the null reference's (K independent SGD runs).
    if any(m.get("independent") and m.get("fl") for m in groups.values()):
        series = []
        for i, (key, by_mode) in enumerate(groups.items()):
            for mode, style, what in (("fl", "-o", FL), ("independent", "--x", NULL)):
                if by_mode.get(mode):
                    series.append((f"{what} {_group_name(fields, key)}".strip(),
                                   cmap(i / max(len(groups) - 1, 1)), style,
                                   [_profile(by_mode[mode])]))  # fmt: skip
        written.append(plots.depth_profiles(
            out_dir / "null_profile.png", series,
            ["FL clients (solid) vs independent SGD runs from one init (dashed)"],
            "relative dispersion D_l after round 1", log=(0,)))  # fmt: skip

    # The FL-CL gap against the first swept field (depth, width, kernel, local steps, ...).
    gaps = {
        index: [mean_ci([c - f for c, f in _paired(m.get("centralized", []), m.get("fl", []),
                                                    index)]) for m in groups.values()]
        for index in (-1, 0)
    }  # fmt: skip
    if any(math.isfinite(g[0]) for g in gaps[-1]):
        fig, ax = plt.subplots(figsize=(6, 4))
        for index, style, when in ((-1, "-o", "last round"), (0, "--s", "round 1")):
            means = np.array([g[0] for g in gaps[index]]) * 100
            if np.all(np.isnan(means)):  # round 1 not evaluated
                continue
            halves = np.nan_to_num(np.array([g[1] for g in gaps[index]]) * 100)
            ax.errorbar(positions, means, yerr=halves, fmt=style, capsize=3, label=when)
        ax.axhline(0, color="gray", lw=0.8)
        written.append(_field_plot(
            fig, ax, label, xs, positions,
            "CL - FL test accuracy (points)\nbars: paired 95% t-interval over seeds",
            out_dir / "gap.png"))  # fmt: skip

    # Per-layer divergence over rounds (the paper's figure 2a): every group's FL runs, the mean
    # over seeds, one panel per group, colour = the layer's relative depth (colourbar).
    if fl_groups:
        written += plots.panels(
            out_dir / "divergence_over_rounds.png", fl_groups,
            lambda ax, item: _draw_over_rounds(ax, fields, *item, cmap),
            ylabel="FL relative dispersion D_l\n(mean over seeds)", size=(3.4, 2.9, 1.0),
            colorbar=("viridis", "layer l / L (0: input side, 1: the head)"))  # fmt: skip
    return written


def _field_plot(fig, ax, label, xs, positions, ylabel, path) -> str:
    """Labels an against-the-swept-field plot, puts its legend off the data, saves it."""
    plots.field_axis(ax, label, xs, positions)
    ax.set_ylabel(ylabel)
    plots.legend_outside(ax, 8)
    return plots.save(fig, path)


def _plot_curves(fields: list[str], groups: dict, batch, path: pathlib.Path) -> list[str]:
    """Test accuracy against round, each role, one panel per group: the mean over seeds and a
    band from the lowest to the highest seed."""

    def draw(ax, item):
        key, by_mode = item
        for runs in by_mode.values():
            r = role(runs[0]["config"], batch)
            curves = [[(row["round"], row["eval/accuracy"] * 100) for row in run["rows"]
                       if row.get("eval/accuracy") is not None] for run in runs]  # fmt: skip
            plots.seed_band(ax, [p[0] for p in curves[0]], [[p[1] for p in c] for c in curves],
                            plots.ROLE_COLORS.get(r), r)  # fmt: skip
        plots.panel_title(ax, _group_name(fields, key))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)

    return plots.panels(path, list(groups.items()), draw,
                        ylabel="test accuracy (%)\nmean; band: seed range")  # fmt: skip


def _draw_over_rounds(ax, fields, key, runs, cmap) -> None:
    layers = runs[0]["run_info"]["layers"]
    rounds = [r["round"] for r in runs[0]["rows"]]
    for i, name in enumerate(layers):
        per_seed = [[np.nan if r.get(f"divergence/{name}/kernel/relative") is None
                     else r[f"divergence/{name}/kernel/relative"] for r in run["rows"]]
                    for run in runs if len(run["rows"]) == len(rounds)]  # fmt: skip
        ax.plot(rounds, np.nanmean(np.asarray(per_seed, float), 0), lw=1.1,
                color=cmap(i / max(len(layers) - 1, 1)))  # fmt: skip
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.set_xlabel("round")
    title = _group_name(fields, key)
    plots.panel_title(ax, f"{title} ({len(runs)} seeds)" if title else f"{len(runs)} seeds", 8)


SETTINGS = (
    ("data.partition", "partition"),
    ("fl.num_clients", "clients"),
    ("model.name", "model"),
    ("model.depth", "depth"),
    ("model.width", "width"),
    ("model.kernel_size", "kernel"),
    ("model.norm", "norm"),
    ("model.norm_groups", "norm groups"),
    ("model.norm_group_size", "channels per group"),
    ("model.skip", "skip"),
    ("fl.local_epochs", "local epochs"),
    ("fl.local_steps", "local steps"),
    ("fl.batch_size", "batch"),
    ("num_rounds", "rounds"),
    ("algorithm.name", "algorithm"),
    ("client_opt.name", "client optimizer"),
    ("client_opt.learning_rate", "lr"),
    ("client_opt.momentum", "momentum"),
    ("client_opt.weight_decay", "weight decay"),
    ("precision", "precision"),
)


def settings_as_run(fields: list[str], groups: dict) -> tuple[str, list[str]]:
    """The settings every point shares, read from the points' own configs (one line), and one
    line per group and mode for the settings that differ between points but are not the group's
    own columns (a zipped arm's batch size, a mode's algorithm, an overridden round count). A
    field a point's config lacks (it predates the field) reads None."""

    def setting(r, f):
        return field_value(r["config"], f, missing=None)

    runs = [(key, mode, r) for key, by_mode in groups.items() for mode, rs in by_mode.items()
            for r in rs]  # fmt: skip
    values = {f: {str(setting(r, f)) for _, _, r in runs} for f, _ in SETTINGS}
    info = runs[0][2]["run_info"]
    fixed = [f"dataset {info.get('dataset')} ({info.get('num_train')} train"
             + (f" / {info['num_validation']} validation" if info.get("num_validation") else "")
             + f" / {info.get('num_test')} test)"]  # fmt: skip
    fixed += [f"{name} {next(iter(values[f]))}" for f, name in SETTINGS
              if len(values[f]) == 1 and values[f] != {"None"}]  # fmt: skip
    varying = [(f, name) for f, name in SETTINGS if len(values[f]) > 1 and f not in fields]
    lines = []
    if varying:
        seen = {}
        for key, mode, r in runs:
            text = ", ".join(f"{name} {setting(r, f)}" for f, name in varying)
            seen.setdefault((_group_name(fields, key), mode), set()).add(text)
        lines = [f"- {label + ': ' if label else ''}{mode}: {' | '.join(sorted(texts))}"
                 for (label, mode), texts in seen.items()]  # fmt: skip
    return "; ".join(fixed), lines


def _unpaired_note(groups: dict, sweep_dir: pathlib.Path, config: dict) -> list[str]:
    """A warning when the sweep has FL and CL runs but no row holds both: each arm's own settings
    (its tuned learning rate, a steps-matched batch) make its own rows, so the gap columns are
    empty and the pairing is the comparison protocol's (``compare.md``)."""
    has = {m for g in groups.values() for m in g}
    together = any("fl" in g and "centralized" in g for g in groups.values())
    if together or not {"fl", "centralized"} <= has:
        return []
    written = (sweep_dir / "compare.md").exists() or (config.get("compare") or {}).get("reference")
    where = "`compare.md` beside this report" if written else (
        "`fedjax-deep compare` (it writes `compare.md`)")  # fmt: skip
    return [
        "**No row pairs FL with CL**: each arm's settings (a learning rate of its own, a "
        "steps-matched batch) put it on its own rows, so the gap columns are empty. The paired "
        f"comparison, each arm at its rate tuned on validation accuracy, is {where}.",
        "",
    ]


def write_sweep_report(sweep_dir: str | pathlib.Path) -> pathlib.Path:
    """Writes ``report.md`` and the plots into a sweep's workdir; returns the report's path."""
    sweep_dir = pathlib.Path(sweep_dir)
    fields, groups = collect(sweep_dir)
    if not groups:
        raise FileNotFoundError(f"{sweep_dir}: no finished runs (*/summary.json) to report")
    config = read_config(sweep_dir)
    table = sweep_table(fields, groups)
    missing = not_finished(sweep_dir)
    fixed, per_point = settings_as_run(fields, groups)
    path = sweep_dir / "report.md"
    check_writable(
        sweep_dir,
        ["report.md", "accuracy.png", "learning_curves.png"],
        "make the sweep's directory writable",
    )
    try:
        plotted = plot_sweep(fields, groups, sweep_dir)
    except OSError as e:
        raise InputError(f"{e.filename or sweep_dir} cannot be written ({e.strerror or e}); make "
                         "the sweep's directory writable") from None  # fmt: skip
    text = [
        "# Sweep report",
        "",
        f"Swept: {', '.join(f'`{f}` = {list(v)}' for f, v in config['sweep'])}.",
        "",
        *_unpaired_note(groups, sweep_dir, config),
        *(["Points not in the table (no summary.json):", "", *missing, ""] if missing else []),
        "Runs: " + ", ".join(sorted({m for g in groups.values() for m in g})) + " (fl: federated; "
        "centralized: one learner, same examples per round; independent: K SGD runs from one "
        "initialization, never averaged, the null reference).",
        "",
        "Settings as run (read from each point's config.json, not the sweep root's; our choices "
        f"where the paper is silent): {fixed}. CL trains the same model with the same optimizer "
        "on the union of the client data, seeing the same number of examples per round.",
        "",
        *(
            ["Settings that vary by point (beyond the table's own columns):", "", *per_point, ""]
            if per_point
            else []
        ),  # fmt: skip
        "Accuracy in %, gap = CL - FL in points; divergence = FL relative dispersion "
        "sum_k p_k ||W_k - Wbar||^2 / ||Wbar||^2 averaged over layer kernels, measured after local "
        "training. Cells are mean ± 95% t-interval half-width over seeds (no interval: one seed).",
        "",
        table,
    ]
    text += [f"![{p}]({p})" for p in plotted]
    try:
        path.write_text("\n".join(text) + "\n")
    except OSError as e:
        raise InputError(f"{path} cannot be written ({e.strerror or e}); make the sweep's "
                         "directory writable") from None  # fmt: skip
    return path
