"""E1's grid-widening rule applied to the controls (cpu), second pass: the arms that chose an end of
their grid again after the first pass (configs/e1_widen_a_mnist1d.py), and those whose sweeps
finished after it, each run one grid step further on that side.

    fedjax-deep train --config configs/e1_widen_b_mnist1d.py --workdir runs/e1_widen_b

Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0). 25 runs.

- residual CNN at depth 16: FL 0.003 (chose 0.01 of 0.01-0.3), CL 0.001 (chose 0.003 of 0.003-0.1);
- plain MLP at depth 16: FL 0.003 (chose 0.01 of 0.01-0.3), CL 0.003 (chose 0.01 of 0.01-0.1:
  every rate left it at chance);
- BatchNorm CNN at depth 16: FL 0.01 (chose 0.03 of 0.03-0.3).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.name", "model.width", "model.skip", "model.norm",
          "model.norm_group_size", "mode", "client_opt.learning_rate")  # fmt: skip
POINTS = (
    (16, "plain_cnn", 8, True, "group", 0, "fl", 0.003),
    (16, "plain_cnn", 8, True, "group", 0, "centralized", 0.001),
    (16, "plain_mlp", 32, False, "group", 4, "fl", 0.003),
    (16, "plain_mlp", 32, False, "group", 4, "centralized", 0.003),
    (16, "plain_cnn", 8, False, "batch", 0, "fl", 0.01),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
