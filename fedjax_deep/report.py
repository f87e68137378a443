"""Reports of a sweep: a markdown table and PNG plots, read back from the runs' files.

The sweep's points are grouped by every swept field except ``mode`` and ``seed``. For each group the
table gives centralized (CL) and federated (FL) test accuracy after the first and the last round,
their gap (CL - FL, in points), and FL's mean layer divergence (relative dispersion, mean over layer
kernels) after the first and the last round. With several seeds each cell is the mean and a 95%
t-interval half-width over seeds.

Plots: accuracy against the first swept field (FL and CL, first and last round); FL's per-layer
relative dispersion after round 1 against relative layer depth ``l / L``, one curve per group; the
CL - FL gap against the first swept field (the effect of depth, width, receptive field or local
steps, whichever is swept first); per-layer divergence over rounds for the last group's FL run (the
paper's figure 2a). Runs in ``independent`` mode (K SGD runs from one initialization, E7) fill the
null-divergence column.
"""

from __future__ import annotations

import math
import pathlib
import textwrap
import warnings
from collections import defaultdict

import numpy as np

from fedjax_deep.runlog import read_config, read_run

IGNORED = ("mode", "seed")


def mean_ci(values) -> tuple[float, float, int]:
    """Mean, 95% t-interval half-width (nan for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    if len(v) == 1:
        return float(v[0]), math.nan, 1
    from scipy import stats

    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half), len(v)


def fmt_ci(mean: float, half: float, scale: float = 1.0, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "-"
    text = f"{mean * scale:.{digits}f}"
    if math.isfinite(half):
        text += f" ± {half * scale:.{digits}f}"
    return text


def _fmt_sci(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.2e}" + (f" ± {half:.1e}" if math.isfinite(half) else "")


def dict_field(config: dict, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def _accuracy_at(rows: list[dict], index: int):
    """Test accuracy after the last round (``index=-1``) or after round 1 (``index=0``; None when
    round 1 was not evaluated)."""
    with_eval = [r for r in rows if r.get("eval/accuracy") is not None]
    if not with_eval or (index == 0 and with_eval[0]["round"] != 1):
        return None
    return with_eval[index]["eval/accuracy"]


def short_names(fields: list[str]) -> list[str]:
    """Each dotted field's last part, or the whole field where two last parts clash
    (``algorithm.name`` and ``server_opt.name``)."""
    shorts = [f.rsplit(".", 1)[-1] for f in fields]
    return [
        f if shorts.count(short) > 1 else short for f, short in zip(fields, shorts, strict=True)
    ]


def collect(sweep_dir: pathlib.Path) -> tuple[list[str], dict]:
    """Group the sweep's runs: ``(group fields, {group values: {mode: [run, ...]}})``."""
    config = read_config(sweep_dir)
    fields = []
    for entry_fields, _ in config["sweep"]:
        entry_fields = [entry_fields] if isinstance(entry_fields, str) else list(entry_fields)
        # Fields zipped with the seed vary within a group. Fields zipped with the mode (a
        # steps-matched CL arm, an FL-only algorithm) do form groups: FL is paired with the CL
        # of the same group only, and an arm without a partner is shown alone.
        if "seed" not in entry_fields:
            fields += [f for f in entry_fields if f not in IGNORED]
    groups: dict = defaultdict(lambda: defaultdict(list))
    for run_dir in sorted(p.parent for p in sweep_dir.glob("*/summary.json")):
        run = read_run(run_dir)
        key = tuple(dict_field(run["config"], f) for f in fields)
        groups[key][run["config"]["mode"]].append(run)
    return fields, dict(sorted(groups.items()))


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
        cells = [str(k) for k in key]
        any_run = (fl or cl or null)[0]
        model_cfg = any_run["config"]["model"]
        rf = any_run["run_info"].get("receptive_field")
        cells += [_model_label(model_cfg), "-" if rf is None else str(rf)]
        acc = {}
        for name, runs in (("cl", cl), ("fl", fl)):
            acc[name, -1] = [_accuracy_at(r["rows"], -1) for r in runs]
            acc[name, 0] = [_accuracy_at(r["rows"], 0) for r in runs]
        gaps = {}
        for idx in (-1, 0):
            paired = _paired(cl, fl, idx)
            gaps[idx] = mean_ci([c - f for c, f in paired])
        div_first = mean_ci([r["rows"][0].get("divergence/mean/relative") for r in fl])
        div_last = mean_ci([r["rows"][-1].get("divergence/mean/relative") for r in fl])
        cells += [
            fmt_ci(*mean_ci(acc["cl", -1])[:2], 100),
            fmt_ci(*mean_ci(acc["fl", -1])[:2], 100),
            fmt_ci(*gaps[-1][:2], 100),
            fmt_ci(*mean_ci(acc["cl", 0])[:2], 100),
            fmt_ci(*mean_ci(acc["fl", 0])[:2], 100),
            fmt_ci(*gaps[0][:2], 100),
            _fmt_sci(*div_first[:2]),
            _fmt_sci(*div_last[:2]),
            _fmt_sci(*mean_ci([r["rows"][0].get("divergence/mean/relative") for r in null])[:2]),
            str(max(len(fl), len(cl), len(null))),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _model_label(model_cfg: dict) -> str:
    """'plain_cnn-8 w16' (plain nets: depth and width), 'resnet-18 x2' (zoo: width multiplier)."""
    label = f"{model_cfg['name']}-{model_cfg['depth']}"
    if model_cfg["name"].startswith("plain"):
        widths = model_cfg.get("widths") or ()
        return f"{label} w{'/'.join(map(str, widths)) if widths else model_cfg.get('width')}"
    mult = model_cfg.get("width_mult", 1.0)
    return label if mult == 1.0 else f"{label} x{mult:g}"


def _paired(cl_runs, fl_runs, index):
    """(CL, FL) accuracies of runs with the same seed."""
    cl_by_seed = {r["config"]["seed"]: _accuracy_at(r["rows"], index) for r in cl_runs}
    out = []
    for r in fl_runs:
        c = cl_by_seed.get(r["config"]["seed"])
        f = _accuracy_at(r["rows"], index)
        if c is not None and f is not None:
            out.append((c, f))
    return out


def layer_profile(run: dict, round_index: int = 0, metric: str = "relative"):
    """``(relative depth l/L [L], value [L])`` of one run's per-layer divergence."""
    layers = run["run_info"]["layers"]
    row = run["rows"][round_index]
    values = [row.get(f"divergence/{name}/kernel/{metric}") for name in layers]
    positions = (np.arange(len(layers)) + 1) / len(layers)
    return positions, np.asarray([np.nan if v is None else v for v in values], float)


def _tight(fig) -> None:
    """``tight_layout``, quietly: where long labels leave it no room, ``bbox_inches="tight"``
    at saving makes the room instead."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()


def _finish_field_plot(fig, ax, label, xs, positions, ylabel, path) -> str:
    """Labels an against-the-swept-field plot (log2 axis for wide numeric ranges), saves it."""
    import matplotlib.pyplot as plt

    numeric = all(isinstance(x, int | float) for x in xs)
    ax.set_xlabel(label)
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
    elif not numeric:
        long = len(xs) > 6 or max(len(str(x)) for x in xs) > 10
        ax.set_xticks(positions, [str(x) for x in xs], rotation=60 if long else 0,
                      ha="right" if long else "center", fontsize=7 if long else None)  # fmt: skip
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # off the data
    _tight(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path.name


def panel_grid(n: int, width: float = 3.2, height: float = 2.8, extra: float = 1.5):
    """A figure of ``n`` panels, at most 4 a row, sharing y; unused panels hidden."""
    import matplotlib.pyplot as plt

    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + extra, height * rows),
                             squeeze=False, sharey=True)  # fmt: skip
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def figure_legend(fig, axes) -> None:
    """One legend for every panel's lines (each label once), outside the panels on the right."""
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=7)  # fmt: skip


def _plot_curves(fields: list[str], groups: dict, path: pathlib.Path) -> str:
    """Test accuracy against round, FL and CL (and the null reference), one panel per group: the
    mean over seeds and a band from the lowest to the highest seed."""
    import matplotlib.pyplot as plt

    items = list(groups.items())
    fig, axes = panel_grid(len(items))
    colors = {"centralized": "tab:blue", "fl": "tab:red", "independent": "tab:gray"}
    names = {"centralized": "CL", "fl": "FL", "independent": "null (K runs)"}
    for ax, (key, by_mode) in zip(axes.flat, items, strict=False):
        for mode, runs in by_mode.items():
            curves = [[(r["round"], r["eval/accuracy"] * 100) for r in run["rows"]
                       if r.get("eval/accuracy") is not None] for run in runs]  # fmt: skip
            length = min(len(c) for c in curves)
            if length == 0:
                continue
            x = [p[0] for p in curves[0][:length]]
            stack = np.asarray([[p[1] for p in c[:length]] for c in curves])
            ax.plot(x, stack.mean(0), color=colors.get(mode), label=names.get(mode, mode))
            ax.fill_between(x, stack.min(0), stack.max(0), color=colors.get(mode), alpha=0.2)
        title = ", ".join(f"{f}={k}" for f, k in zip(short_names(fields), key, strict=True))
        ax.set_title(textwrap.fill(title, 42), fontsize=7)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("test accuracy (%)\nmean; band: seed range")
    figure_legend(fig, axes)
    _tight(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path.name


def _save_log_plot(fig, ax, path: pathlib.Path, legend_size: int = 7) -> str:
    """Log-scaled y, grid, legend; saves the figure and closes it; returns the file name."""
    import matplotlib.pyplot as plt

    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=legend_size, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the data
    _tight(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path.name


def plot_sweep(fields: list[str], groups: dict, out_dir: pathlib.Path) -> list[str]:
    """Writes the sweep's PNG plots; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if len(fields) > 1:  # several swept fields: each group's values, in order
        label = ", ".join(short_names(fields))
        xs = [", ".join(str(v) for v in k) for k in groups]
    else:
        label = fields[0].rsplit(".", 1)[-1] if fields else "run"
        xs = [k[0] if fields else i for i, k in enumerate(groups)]
    numeric = all(isinstance(x, int | float) for x in xs)
    positions = xs if numeric else list(range(len(xs)))

    fig, ax = plt.subplots(figsize=(6, 4))
    clipped = False
    for mode, color in (("centralized", "tab:blue"), ("fl", "tab:red")):
        for index, style, when in ((-1, "-o", "last round"), (0, "--s", "round 1")):
            stats = [
                mean_ci([_accuracy_at(r["rows"], index) for r in by_mode.get(mode, [])])
                for by_mode in groups.values()
            ]
            means = np.array([s[0] for s in stats]) * 100
            halves = np.nan_to_num(np.array([s[1] for s in stats]) * 100)
            if np.all(np.isnan(means)):
                continue
            # Accuracy lies in [0, 100]; a t-interval of few seeds can reach past it. The bars
            # stop at the bounds, and the axis label says so.
            low, high = np.minimum(halves, means), np.minimum(halves, 100 - means)
            clipped |= bool(np.any((low < halves) | (high < halves)))
            name = "CL" if mode == "centralized" else "FL"
            ax.errorbar(
                positions,
                means,
                yerr=np.stack([low, high]),
                fmt=style,
                color=color,
                capsize=3,
                label=f"{name}, {when}",
                alpha=1.0 if index == -1 else 0.6,
            )
    seeds = max(len(rs) for by_mode in groups.values() for rs in by_mode.values())
    ylabel = (f"test accuracy (%)\nbars: 95% t-interval over {seeds} seeds"
              + (" (cut at 0 and 100)" if clipped else ""))  # fmt: skip
    written.append(_finish_field_plot(fig, ax, label, xs, positions, ylabel,
                                      out_dir / "accuracy.png"))  # fmt: skip
    written.append(_plot_curves(fields, groups, out_dir / "learning_curves.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    cmap = plt.get_cmap("viridis")
    plotted = False
    for i, (key, by_mode) in enumerate(groups.items()):
        runs = by_mode.get("fl", [])
        if not runs:
            continue
        profiles = [layer_profile(r) for r in runs]
        pos = profiles[0][0]
        mean = np.nanmean(np.stack([p[1] for p in profiles]), axis=0)
        name = ", ".join(f"{f}={k}" for f, k in zip(short_names(fields), key, strict=False))
        ax.plot(pos, mean, "-o", ms=3, color=cmap(i / max(len(groups) - 1, 1)), label=name or "FL")
        plotted = True
    if plotted:
        ax.set_xlabel("relative layer depth l / L (input side left)")
        ax.set_ylabel("relative dispersion D_l after round 1")
        written.append(_save_log_plot(fig, ax, out_dir / "divergence_profile.png", legend_size=8))
    else:
        plt.close(fig)

    # E7: FL's per-layer divergence against the null reference's (K independent SGD runs).
    if any(m.get("independent") and m.get("fl") for m in groups.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, (key, by_mode) in enumerate(groups.items()):
            color = cmap(i / max(len(groups) - 1, 1))
            name = ", ".join(f"{f}={k}" for f, k in zip(short_names(fields), key, strict=False))
            for mode, style, what in (("fl", "-o", "FL"), ("independent", "--x", "null")):
                profiles = [layer_profile(r) for r in by_mode.get(mode, [])]
                if profiles:
                    mean = np.nanmean(np.stack([p[1] for p in profiles]), axis=0)
                    ax.plot(profiles[0][0], mean, style, ms=3, color=color,
                            label=f"{what} {name}".strip())  # fmt: skip
        ax.set_xlabel("relative layer depth l / L (input side left)")
        ax.set_ylabel("relative dispersion D_l after round 1")
        ax.set_title(
            "FL clients (solid) vs independent SGD runs from one init (dashed)", fontsize=9
        )
        written.append(_save_log_plot(fig, ax, out_dir / "null_profile.png"))

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
        written.append(_finish_field_plot(
            fig, ax, label, xs, positions,
            "CL - FL test accuracy (points)\nbars: paired 95% t-interval over seeds",
            out_dir / "gap.png"))  # fmt: skip

    # Per-layer divergence over rounds (the paper's figure 2a): every group's FL runs, the mean
    # over seeds, one panel per group, colour = the layer's relative depth (colourbar).
    fl_groups = [(key, by_mode["fl"]) for key, by_mode in groups.items() if by_mode.get("fl")]
    if fl_groups:
        fig, axes = panel_grid(len(fl_groups), 3.4, 2.9, 1.0)
        for ax, (key, runs) in zip(axes.flat, fl_groups, strict=False):
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
            title = ", ".join(f"{f}={k}"
                              for f, k in zip(short_names(fields), key, strict=True))  # fmt: skip
            ax.set_title(textwrap.fill(f"{title} ({len(runs)} seeds)", 42) if title
                         else f"{len(runs)} seeds",
                         fontsize=8)  # fmt: skip
        for row in axes:
            row[0].set_ylabel("FL relative dispersion D_l\n(mean over seeds)")
        bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1)),
                           ax=axes, fraction=0.03)  # fmt: skip
        bar.set_label("layer l / L (0: input side, 1: the head)")
        fig.savefig(out_dir / "divergence_over_rounds.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append("divergence_over_rounds.png")
    return written


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


def _setting(config: dict, field: str):
    try:
        return dict_field(config, field)
    except (KeyError, TypeError):
        return None  # a run made before the field existed


def settings_as_run(fields: list[str], groups: dict) -> tuple[str, list[str]]:
    """The settings every point shares, read from the points' own configs (one line), and one
    line per group and mode for the settings that differ between points but are not the group's
    own columns (a zipped arm's batch size, a mode's algorithm, an overridden round count)."""
    runs = [(key, mode, r) for key, by_mode in groups.items() for mode, rs in by_mode.items()
            for r in rs]  # fmt: skip
    values = {f: {str(_setting(r["config"], f)) for _, _, r in runs} for f, _ in SETTINGS}
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
            label = ", ".join(f"{f}={k}" for f, k in zip(short_names(fields), key,
                                                                             strict=False))  # fmt: skip
            text = ", ".join(f"{name} {_setting(r['config'], f)}" for f, name in varying)
            seen.setdefault((label, mode), set()).add(text)
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
    plots = plot_sweep(fields, groups, sweep_dir)
    fixed, per_point = settings_as_run(fields, groups)
    text = [
        "# Sweep report",
        "",
        f"Swept: {', '.join(f'`{f}` = {list(v)}' for f, v in config['sweep'])}.",
        "",
        *_unpaired_note(groups, sweep_dir, config),
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
    text += [f"![{p}]({p})" for p in plots]
    path = sweep_dir / "report.md"
    path.write_text("\n".join(text) + "\n")
    return path
