"""Re-renders a committed comparison's figures from its ``compare.json`` alone (no runs needed):
the learning curves with each seed's certified plateau marked, and the divergence, CKA and
FL-over-null figures in ``fedjax_deep.analysis.plots``' current style (issue 23, item 8).

    python experiments/depth_divergence/scripts/replot.py experiments/depth_divergence/results/e1_converged_mnist1d

A ``compare.json`` written before certification is certified here from its per-seed curves
(``compare.certify_result``). Only the figures the folder already holds are redrawn (with their
extra pages, ``curves_2.png``, ...; stale pages of a figure are removed); ``report.md``'s figures
(``accuracy.png``, ``learning_curves.png``, ...) need the runs and are not touched.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from e1_summary import arm_role  # noqa: E402

from fedjax_deep.analysis import compare, plots  # noqa: E402
from fedjax_deep.analysis.runs import CL, FL, NULL, STEPS_MATCHED_CL  # noqa: E402

FIGURES = {
    "curves": plots.plot_curves,
    "divergence": plots.plot_divergence,
    "cka": lambda r, p: plots.plot_divergence(r, p, metric="cka"),
    "null_ratio": plots.plot_null_ratio,
}


def named_by_role(result: dict) -> dict:
    """An older ``compare.json`` names its arms by every swept field and records no role: names
    them as ``e1_summary`` does (``CL``, ``FL, 40 local steps``, ...) and sets the role that
    colours them, so that legends are short and colours follow the role."""
    for gv, arms in result["groups"].items():
        if all("role" in a for a in arms.values()):
            continue
        renamed = {}
        for name, a in arms.items():
            label = arm_role(a["arm"])
            a.setdefault("role", label if label in (CL, FL, STEPS_MATCHED_CL, NULL) else FL)
            renamed[label if label not in renamed else name] = a
        result["groups"][gv] = renamed
    return result


def replot(folder: pathlib.Path) -> list[str]:
    """Redraws the figures of ``folder`` (holding ``compare.json``); returns the files written."""
    result = compare.certify_result(json.loads((folder / "compare.json").read_text()))
    named_by_role(result)
    written = []
    for stem, draw in FIGURES.items():
        if not (folder / f"{stem}.png").exists():
            continue
        for old in folder.glob(f"{stem}_[0-9]*.png"):
            old.unlink()
        written += draw(result, folder / f"{stem}.png")
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=pathlib.Path)
    args = parser.parse_args(argv)
    for folder in args.folders:
        print(f"{folder}: {', '.join(replot(folder))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
