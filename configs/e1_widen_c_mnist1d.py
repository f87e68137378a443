"""E1's grid-widening rule applied to the controls (cpu), third pass: the arms whose sweeps finished
after the second pass (configs/e1_widen_b_mnist1d.py) and chose an end of their grid, and the plain
MLP's CL at depth 16, which chose the new end again; each run one grid step further on that side.

    fedjax-deep train --config configs/e1_widen_c_mnist1d.py --workdir runs/e1_widen_c

Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3). 25 runs.

- BatchNorm CNN at depth 16: CL 0.003 (chose 0.01 of 0.01-0.1);
- CNN with GroupNorm of 4 channels per group at depth 16: CL 0.003 (chose 0.01 of 0.01-0.1), FL
  0.01 (chose 0.03 of 0.03-0.3);
- CNN of width 32 at depth 8: FL 0.01 (chose 0.03 of 0.03-0.3);
- plain MLP at depth 16: CL 0.001 (chose 0.003 of 0.003-0.1).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.name", "model.width", "model.norm", "model.norm_group_size",
          "mode", "client_opt.learning_rate")  # fmt: skip
POINTS = (
    (16, "plain_cnn", 8, "batch", 0, "centralized", 0.003),
    (16, "plain_cnn", 8, "group", 4, "centralized", 0.003),
    (16, "plain_cnn", 8, "group", 4, "fl", 0.01),
    (8, "plain_cnn", 32, "group", 0, "fl", 0.01),
    (16, "plain_mlp", 32, "group", 4, "centralized", 0.001),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
