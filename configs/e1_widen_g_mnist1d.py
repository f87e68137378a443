"""E1's grid-widening rule applied to configs/e1_controls_depths_mnist1d.py (cpu): the three
depth-8 arms that chose the small end of their 4-point grid, each run one grid step further.

    fedjax-deep train --config configs/e1_widen_g_mnist1d.py --workdir runs/e1_widen_g

15 runs. An arm that chooses the new end again is flagged and not widened further (time).

- BatchNorm at depth 8, CL: 0.001 (chose 0.003 of 0.003-0.1);
- residual at depth 8, CL: 0.001 (chose 0.003 of 0.003-0.1), FL: 0.003 (chose 0.01 of 0.01-0.3).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.skip", "model.norm", "model.norm_group_size", "mode",
          "algorithm.name", "client_opt.learning_rate")  # fmt: skip
POINTS = (
    (8, False, "batch", 0, "centralized", "fedavg", 0.001),
    (8, True, "group", 0, "centralized", "fedavg", 0.001),
    (8, True, "group", 0, "fl", "fedavg", 0.003),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
