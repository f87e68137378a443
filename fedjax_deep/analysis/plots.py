"""The figures of reports and comparisons, in one style.

One style: PNGs at :data:`DPI` (legible, small files), at most :data:`MAX_PANELS` panels a figure
(more groups go on further pages: ``curves.png``, ``curves_2.png``, ...), legends outside the data
(right of the panels), arms coloured by role (:data:`ROLE_COLORS`) and named by role
(:mod:`fedjax_deep.analysis.runs`). Matplotlib is imported by the functions that draw, never when
this module is imported.

Building blocks: :func:`pyplot`, :func:`panel_grid`, :func:`figure_legend`, :func:`legend_outside`,
:func:`save`, :func:`panels` (pages of panels), :func:`seed_band` (a mean over seeds and its
range), :func:`depth_profiles` (per-layer values against relative depth), :func:`field_axis` (an
axis of swept values). A comparison's figures: :func:`plot_curves`, :func:`plot_divergence`,
:func:`plot_null_ratio`.
"""

from __future__ import annotations

import pathlib
import textwrap
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fedjax_deep.analysis.compare import arms_with
from fedjax_deep.analysis.runs import CL, FL, NULL, STEPS_MATCHED_CL

DPI = 120
MAX_PANELS = 6
ROLE_COLORS = {CL: "tab:blue", STEPS_MATCHED_CL: "tab:green", FL: "tab:red", NULL: "tab:gray"}
DEPTH_AXIS = "relative depth l / L (input side left, the head at 1)"


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
    cycle = [c for c in pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
             if c not in ROLE_COLORS.values()] or ["black"]  # fmt: skip
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
        if i in log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(DEPTH_AXIS)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(ylabel)
    figure_legend(fig, axes)
    return save(fig, path)


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


def plot_curves(result: Mapping, path) -> list[str]:
    """Test accuracy against round at each arm's chosen learning rate: the mean over seeds and a
    band from the lowest to the highest seed, one panel per group value; legend outside. Returns
    the file names written."""
    groups = list(result["groups"].items())
    roles = {n: a.get("role") for _, arms in groups for n, a in arms.items()}
    rank = {r: i for i, r in enumerate(ROLE_COLORS)}
    color = colors(sorted(roles, key=lambda n: (rank.get(roles[n], len(rank)), n)), roles)

    def draw(ax, item):
        gv, arms = item
        drawn = 0
        for name, a in arms.items():
            seeds = list(a["per_seed"].values())
            if not seed_band(ax, seeds[0]["rounds"], [np.asarray(p["accuracy"]) * 100
                                                      for p in seeds], color[name], name):  # fmt: skip
                continue
            # Each panel's own chosen learning rates, bottom right (where late curves are not).
            ax.text(0.97, 0.04 + 0.07 * drawn, f"lr {a['chosen_lr']:g}", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7, color=color[name])  # fmt: skip
            drawn += 1
        panel_title(ax, _group_title(result, gv))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)

    return panels(path, groups, draw, ylabel="test accuracy (%)\nmean; band: seed range",
                  size=(3.2, 3.0, 2.0))  # fmt: skip


def plot_divergence(result: Mapping, path, metric: str = "update") -> list[str]:
    """Per-layer scale-free divergence (``metric`` after round 1 and after the last round)
    against relative depth ``l / L``, one line per group value and arm, for every arm that logs
    it; colour says the group, line style the arm. Returns ``[]`` when no arm logs it."""
    lines = [(gv, name, d) for gv, name, _, d in arms_with(result, "divergence")
             if f"{metric}_round1" in d]  # fmt: skip
    if not lines:
        return []
    cmap = pyplot().get_cmap("viridis")
    group_values = list(dict.fromkeys(gv for gv, _, _ in lines))
    arm_names = list(dict.fromkeys(name for _, name, _ in lines))
    styles = ("-o", "--s", ":^", "-.v")
    series = [(_group_label(result, gv, name),
               cmap(group_values.index(gv) / max(1, len(group_values) - 1)),
               styles[arm_names.index(name) % len(styles)],
               [d[f"{metric}_round1"], d[f"{metric}_last"]]) for gv, name, d in lines]  # fmt: skip
    what = {"update": "U_l (update dispersion)", "cka": "linear CKA between clients"}
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
    return [depth_profiles(path, series, titles, "FL over null (mean over seeds)", log=(0,),
                           unit_line=True, sharey=False)]  # fmt: skip
