"""The figures of reports and comparisons, in one style.

One style: PNGs at :data:`DPI` (legible, small files), at most :data:`MAX_PANELS` panels a figure
(more groups go on further pages: ``curves.png``, ``curves_2.png``, ...), legends outside the data
(right of the panels), arms coloured by role (:data:`ROLE_COLORS`) and named by role
(:mod:`fedjax_deep.analysis.runs`). Matplotlib is imported by the functions that draw, never when
this module is imported.

Building blocks: :func:`pyplot`, :func:`panel_grid`, :func:`figure_legend`, :func:`legend_outside`,
:func:`save`, :func:`panels` (pages of panels), :func:`seed_band` (a mean over seeds and its
range), :func:`depth_profiles` (per-layer values against relative depth), :func:`field_axis` (an
axis of swept values), :func:`ratio_axis` (a linear axis, or a log axis with labelled ticks where
the values span more than :data:`LOG_SPAN`). A comparison's figures: :func:`plot_curves` (with
each seed's certified plateau marked), :func:`plot_divergence`, :func:`plot_null_ratio`.
"""

from __future__ import annotations

import math
import pathlib
import textwrap
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fedjax_deep.analysis.compare import arms_with
from fedjax_deep.analysis.runs import CL, FL, NULL, STEPS_MATCHED_CL
from fedjax_deep.analysis.stats import PLATEAU_WINDOW, TOL, certify_plateau

DPI = 120
MAX_PANELS = 6
MAX_LINES = 8  # lines a profile panel holds before a figure goes one panel per group
PANEL_ARMS = 3  # arms a panel of one group draws (each two lines: round 1, last round)
CURVE_ARMS = 4  # arms a learning-curve panel draws, by role (CL, steps-matched CL, FL, null first)
ROLE_COLORS = {CL: "tab:blue", STEPS_MATCHED_CL: "tab:green", FL: "tab:red", NULL: "tab:gray"}
DEPTH_AXIS = "relative depth l / L (input side left, the head at 1)"
LOG_SPAN = 4.0  # a ratio axis goes log (labelled) when its largest value is this times its smallest


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (imported here, when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: pathlib.Path, *, tight: bool = True) -> str:
    """Lays the figure out (quietly: where long labels leave ``tight_layout`` no room,
    ``bbox_inches='tight'`` makes it at saving), saves it at :data:`DPI`, closes it; returns the
    file name."""
    if tight:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return pathlib.Path(path).name


def legend_outside(ax, fontsize: int = 7) -> None:
    """The axis's legend to the right of its data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=fontsize)


def figure_legend(fig, axes) -> None:
    """One legend for every panel's lines (each label once), outside the panels on the right."""
    handles = {}
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=7)  # fmt: skip


def panel_grid(n: int, width: float = 3.2, height: float = 2.8, extra: float = 1.5):
    """A figure of ``n`` panels (``n <= MAX_PANELS``), at most 3 a row, sharing y; ``extra``
    inches on the right for the legend. Returns ``(fig, axes [rows, cols])``."""
    plt = pyplot()
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols + extra, height * rows),
                             squeeze=False, sharey=True)  # fmt: skip
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def panel_title(ax, text: str, fontsize: int = 7) -> None:
    ax.set_title(textwrap.fill(text, 42), fontsize=fontsize)


def panels(
    path: pathlib.Path,
    items: Sequence,
    draw: Callable,
    *,
    ylabel: str,
    size: tuple[float, float, float] = (3.2, 2.8, 1.5),
    colorbar: tuple[str, str] | None = None,
) -> list[str]:
    """One panel per item, ``draw(ax, item)`` each, :data:`MAX_PANELS` a figure; the first column
    labelled ``ylabel``; one legend outside on the right, or a colourbar ``(cmap name, label)`` of
    ``[0, 1]``. Page 1 is ``path``, page k ``<stem>_k.png``; returns the file names written."""
    plt = pyplot()
    path = pathlib.Path(path)
    written = []
    for start in range(0, len(items), MAX_PANELS):
        page = items[start : start + MAX_PANELS]
        fig, axes = panel_grid(len(page), *size)
        for ax, item in zip(axes.flat, page, strict=False):
            draw(ax, item)
        for row in axes:
            row[0].set_ylabel(ylabel)
        if colorbar:
            mappable = plt.cm.ScalarMappable(cmap=colorbar[0], norm=plt.Normalize(0, 1))
            fig.colorbar(mappable, ax=axes, fraction=0.03).set_label(colorbar[1])
        else:
            figure_legend(fig, axes)
        k = start // MAX_PANELS + 1
        name = path if k == 1 else path.with_name(f"{path.stem}_{k}{path.suffix}")
        written.append(save(fig, name, tight=not colorbar))  # a colourbar lays itself out
    return written


def seed_band(ax, rounds: Sequence, curves: Sequence[Sequence[float]], color, label: str) -> bool:
    """The mean of ``curves`` (``[seeds][E]``, cut to the shortest) against ``rounds`` and a band
    from the lowest to the highest seed; False when a curve is empty (nothing drawn)."""
    length = min(len(c) for c in curves)
    if length == 0:
        return False
    stack = np.stack([np.asarray(c[:length], float) for c in curves])
    x = np.asarray(rounds[:length])
    ax.plot(x, stack.mean(0), color=color, label=label)
    ax.fill_between(x, stack.min(0), stack.max(0), color=color, alpha=0.2)
    return True


def colors(names: Sequence[str], roles: Mapping[str, str]) -> dict[str, str]:
    """A colour per arm name: its role's colour for the first arm of each role, the colour cycle
    for the others."""
    from matplotlib.colors import to_hex  # the cycle is hex, the role colours are names

    taken = {to_hex(c) for c in ROLE_COLORS.values()}
    cycle = [c for c in pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
             if to_hex(c) not in taken] or ["black"]  # fmt: skip
    out, used = {}, set()
    for name in names:
        color = ROLE_COLORS.get(roles.get(name))
        if color is None or color in used:
            color = cycle[len(out) % len(cycle)]
        used.add(color)
        out[name] = color
    return out


def depth_profiles(
    path: pathlib.Path,
    series: Sequence[tuple[str, object, str, Sequence[Sequence[float]]]],
    titles: Sequence[str],
    ylabel: str,
    *,
    log: Sequence[int] = (),
    unit_line: bool = False,
    sharey: bool = True,
) -> str:
    """Per-layer values against relative depth ``l / L`` (the head at 1), one panel per title:
    ``series`` is ``(label, colour, line style, [per panel: values [L]])``; panels listed in
    ``log`` on a log scale, a line at 1 with ``unit_line``; the legend outside on the right."""
    plt = pyplot()
    n = len(titles)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.4), squeeze=False, sharey=sharey)
    axes = axes[0]
    for label, color, style, per_panel in series:
        for ax, values in zip(axes, per_panel, strict=True):
            x = (np.arange(len(values)) + 1) / len(values)
            ax.plot(x, np.asarray(values, float), style, ms=3, color=color, label=label)
    for i, (ax, title) in enumerate(zip(axes, titles, strict=True)):
        if unit_line:
            ax.axhline(1, color="gray", lw=0.8)
        if i in log and ratio_axis(ax, [v for _, _, _, pp in series for v in pp[i]]):
            title += " (log axis)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(DEPTH_AXIS)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(ylabel)
    figure_legend(fig, axes)
    return save(fig, path)


def ratio_axis(ax, values: Sequence[float]) -> bool:
    """The y axis of positive ratios: linear when they span less than :data:`LOG_SPAN` (a log
    axis over a narrow range shows one unreadable tick), else log with plain-number ticks at
    1-2-5 of each decade (0.5, 1, 2, 5, 10, 20; powers of ten alone past 8 ticks). Returns whether it went log (say so in the
    panel's title)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], float)
    if len(v) == 0 or v.max() / v.min() < LOG_SPAN:
        return False
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_yscale("log")
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in (1, 2, 5)
             if v.min() / 2 <= m * 10.0**e <= v.max() * 2]  # fmt: skip
    if len(ticks) > 8:  # many decades: the powers of ten alone
        ticks = [t for t in ticks if math.log10(t).is_integer()]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    return True


def field_axis(ax, label: str, xs: Sequence, positions: Sequence) -> None:
    """An x axis of swept values: a log2 axis for a wide positive numeric range, the values as
    (rotated, where long) tick labels for names."""
    numeric = all(isinstance(x, int | float) for x in xs)
    ax.set_xlabel(label)
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
    elif not numeric:
        long = len(xs) > 6 or max(len(str(x)) for x in xs) > 10
        ax.set_xticks(positions, [str(x) for x in xs], rotation=60 if long else 0,
                      ha="right" if long else "center", fontsize=7 if long else None)  # fmt: skip
    ax.grid(alpha=0.3)


# -- a comparison's figures -----------------------------------------------------------------------


def _group_title(result: Mapping, gv) -> str:
    g = result["group"]
    return str(gv) if g == "group" else f"{g.rsplit('.', 1)[-1]} = {gv}"


def _group_label(result: Mapping, gv, name: str) -> str:
    return f"{result['group'].rsplit('.', 1)[-1]}={gv} ({name})"


def seed_marks(ax, per_seed: Mapping, color) -> tuple[int, int]:
    """Each seed's plateau on its curve (accuracy in %): a dot at the round from which it is
    certified (its ``plateau`` record, or :func:`~fedjax_deep.analysis.stats.certify_plateau`
    of its curve), an open circle at the last round of a seed still rising. Returns
    ``(certified, rising)`` counts."""
    done = rising = 0
    for p in per_seed.values():
        if len(p["accuracy"]) == 0:
            continue
        rec = p.get("plateau") or certify_plateau(100 * np.asarray(p["accuracy"], float),
                                                  p["rounds"], PLATEAU_WINDOW, 100 * TOL)  # fmt: skip
        rounds = list(p["rounds"])
        if rec["certified"]:
            i = rounds.index(rec["since"])
            ax.plot(rounds[i], 100 * p["accuracy"][i], "o", ms=3.5, color=color, zorder=3)
            done += 1
        else:
            ax.plot(rounds[-1], 100 * p["accuracy"][-1], "o", ms=5, mfc="none", mec=color,
                    mew=1.0, zorder=3)  # fmt: skip
            rising += 1
    return done, rising


def plot_curves(result: Mapping, path) -> list[str]:
    """Test accuracy against round at each arm's chosen learning rate: the mean over seeds and a
    band from the lowest to the highest seed, one panel per group value, each seed's certified
    plateau marked (:func:`seed_marks`: a dot where it is certified from, an open circle at the
    last round of a seed still rising); arms of one evaluation (the null reference) are left out,
    and a panel draws its first :data:`CURVE_ARMS` arms by role (the others are named in its
    title's count: compare.md has them; arms named by their role alone go first, and only they
    where the panel has them); legend outside. Returns the file names written."""
    groups = list(result["groups"].items())
    roles = {n: a.get("role") for _, arms in groups for n, a in arms.items()}
    rank = {r: i for i, r in enumerate(ROLE_COLORS)}
    color = colors(sorted(roles, key=lambda n: (rank.get(roles[n], len(rank)), n)), roles)

    def draw(ax, item):
        gv, arms = item
        drawn = 0
        # The arms named by their role alone (CL, steps-matched CL, FL) where the panel has
        # them, then the others, by role.
        by_role = [n for n in arms if n == roles[n]] or list(arms)
        shown = sorted(by_role, key=lambda n: (rank.get(roles[n], len(rank)), n))[:CURVE_ARMS]
        for name in shown:
            a = arms[name]
            seeds = list(a["per_seed"].values())
            if min(len(p["accuracy"]) for p in seeds) < 2 or not seed_band(
                ax, seeds[0]["rounds"], [np.asarray(p["accuracy"]) * 100 for p in seeds],
                color[name], name):  # fmt: skip
                continue
            done, rising = seed_marks(ax, a["per_seed"], color[name])
            # Each panel's own learning rates and certified seeds, bottom right (where late
            # curves are not).
            ax.text(0.97, 0.04 + 0.07 * drawn,
                    f"lr {a['chosen_lr']:g}, {done}/{done + rising} certified",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                    color=color[name])  # fmt: skip
            drawn += 1
        ax.plot([], [], "o", ms=3.5, color="0.3", label="seed certified from this round")
        ax.plot([], [], "o", ms=5, mfc="none", mec="0.3", label="seed still rising (last round)")
        more = len(arms) - len(shown)
        panel_title(ax, _group_title(result, gv) + (f" (+{more} arms: compare.md)"
                                                    if more > 0 else ""), 9)  # fmt: skip
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)

    return panels(path, groups, draw, ylabel="test accuracy (%)\nmean; band: seed range",
                  size=(3.4, 3.0, 2.4))  # fmt: skip


def plot_divergence(result: Mapping, path, metric: str = "update") -> list[str]:
    """Per-layer scale-free divergence (``metric`` after round 1 and after the last round)
    against relative depth ``l / L``, for every arm that logs it. Up to :data:`MAX_LINES` lines:
    one figure of two panels (round 1, last round), one line per group value and arm (colour
    the group, line style the arm). More (a sweep of many models): one panel per group value,
    :data:`MAX_PANELS` a page, its arms' lines after round 1 (solid) and the last round
    (dashed), the first :data:`PANEL_ARMS` arms of each (the rest are in compare.md). Returns the file names written
    (``[]`` when no arm logs it)."""
    lines = [(gv, name, d) for gv, name, _, d in arms_with(result, "divergence")
             if f"{metric}_round1" in d]  # fmt: skip
    if not lines:
        return []
    what = {"update": "U_l (update dispersion)", "cka": "linear CKA between clients"}
    if len(lines) > MAX_LINES:
        by_group = list(dict.fromkeys(gv for gv, _, _ in lines))
        arm_names = list(dict.fromkeys(name for _, name, _ in lines))
        cycle = pyplot().rcParams["axes.prop_cycle"].by_key()["color"]

        def draw(ax, gv):
            mine = [(name, d) for gv2, name, d in lines if gv2 == gv]
            for name, d in mine[:PANEL_ARMS]:
                c = cycle[arm_names.index(name) % len(cycle)]
                for when, style in (("round1", "-o"), ("last", "--s")):
                    v = np.asarray(d[f"{metric}_{when}"], float)
                    short = textwrap.shorten(name, 48, placeholder="...")
                    label = f"{short}, {'after round 1' if when == 'round1' else 'last round'}"
                    ax.plot((np.arange(len(v)) + 1) / len(v), v, style, ms=3, color=c,
                            label=label)  # fmt: skip
            more = len(mine) - PANEL_ARMS
            panel_title(ax, _group_title(result, gv) + (f" (+{more} arms: compare.md)"
                                                        if more > 0 else ""), 8)  # fmt: skip
            ax.set_xlabel("relative depth l / L")
            ax.grid(alpha=0.3)

        return panels(path, by_group, draw, ylabel=f"{what.get(metric, metric)}\nmean over seeds",
                      size=(3.4, 2.8, 2.6))  # fmt: skip
    cmap = pyplot().get_cmap("viridis")
    group_values = list(dict.fromkeys(gv for gv, _, _ in lines))
    arm_names = list(dict.fromkeys(name for _, name, _ in lines))
    styles = ("-o", "--s", ":^", "-.v")
    series = [(_group_label(result, gv, name),
               cmap(group_values.index(gv) / max(1, len(group_values) - 1)),
               styles[arm_names.index(name) % len(styles)],
               [d[f"{metric}_round1"], d[f"{metric}_last"]]) for gv, name, d in lines]  # fmt: skip
    return [depth_profiles(path, series, ("after round 1", "after the last round"),
                           f"{what.get(metric, metric)}, mean over seeds")]  # fmt: skip


def plot_null_ratio(result: Mapping, path) -> list[str]:
    """FL's per-layer ``D_l`` and ``U_l`` after round 1 over the null reference's, against
    relative depth, one line per group; returns ``[]`` when no arm has a null reference."""
    lines = [(gv, name, r) for gv, name, _, r in arms_with(result, "null_ratio")]
    if not lines:
        return []
    cmap = pyplot().get_cmap("viridis")
    series = [(_group_label(result, gv, name), cmap(k / max(1, len(lines) - 1)), "-o",
               [r["relative"], r["update"]]) for k, (gv, name, r) in enumerate(lines)]  # fmt: skip
    titles = [
        f"FL / null: {what}, after round 1"
        for what in ("D_l (relative dispersion)", "U_l (update dispersion)")
    ]
    return [depth_profiles(path, series, titles, "FL over null (mean over seeds)", log=(0, 1),
                           unit_line=True, sharey=False)]  # fmt: skip
