"""Reading runs back: what a finished sweep says, as tables and figures.

This package owns everything done with a run directory after the run: reading its files
(:mod:`~fedjax_deep.analysis.runs`, on :mod:`fedjax_deep.runfiles`), the comparison protocol's
statistics (:mod:`~fedjax_deep.analysis.stats`), the tuned comparison of a sweep's arms named by
role (:mod:`~fedjax_deep.analysis.compare`: ``compare.md``, ``compare.json``), the sweep report
(:mod:`~fedjax_deep.analysis.report`: ``report.md``) and their figures in one style
(:mod:`~fedjax_deep.analysis.plots`).

It imports the run-file reader and NumPy only: never the config system, the simulator (``fl``,
``models``, ``data``), JAX or orbax, so that a finished run can be read on any machine; matplotlib
and scipy are imported where a figure is drawn or an interval computed
(``tests/test_architecture.py`` holds the rule).

The modules are the API (``analysis.compare.compare``, ``analysis.stats.paired_interval``, ...);
the names below are the ones a study script reaches for most.
"""

from fedjax_deep.analysis.compare import write_comparison
from fedjax_deep.analysis.report import write_sweep_report
from fedjax_deep.analysis.runs import (
    CL,
    FL,
    NULL,
    STEPS_MATCHED_CL,
    arm_names,
    field_value,
    parse_reference,
    read_sweep,
    role,
)
from fedjax_deep.analysis.stats import (
    certify_plateau,
    choose_learning_rate,
    curve_area,
    fmt_ci,
    interval,
    mean_ci,
    paired_interval,
    plateau_value,
    rounds_to,
    seeds_needed,
)

__all__ = [
    "CL",
    "FL",
    "NULL",
    "STEPS_MATCHED_CL",
    "arm_names",
    "certify_plateau",
    "choose_learning_rate",
    "curve_area",
    "field_value",
    "fmt_ci",
    "interval",
    "mean_ci",
    "paired_interval",
    "parse_reference",
    "plateau_value",
    "read_sweep",
    "role",
    "rounds_to",
    "seeds_needed",
    "write_comparison",
    "write_sweep_report",
]
