"""E1's grid-widening rule applied to the controls (cpu), fourth and last pass: the arms that chose
an end of their grid after the third pass (configs/e1_widen_c_mnist1d.py) or in
configs/e1_controls_b_mnist1d.py, each run one grid step further on that side.

    fedjax-deep train --config configs/e1_widen_d_mnist1d.py --workdir runs/e1_widen_d

Grids step by about 3x (..., 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3). 30 runs. An arm that
chooses the new end again is flagged in the report and not widened further (time).

- CNN without normalization at depth 16: FL 0.01 (chose 0.03 of 0.03-0.3), CL 0.003 (chose 0.01
  of 0.01-0.1);
- CNN with GroupNorm of 4 channels per group at depth 16: CL 0.001 (chose 0.003 of 0.003-0.1);
- CNN of width 32 at depth 8: steps-matched CL 0.01 (chose 0.03 of 0.03-0.3);
- CNN with kernel 3 at depth 8: CL 0.003 (chose 0.01 of 0.01-0.1);
- plain MLP at depth 16: CL 0.0003 (chose 0.001 of 0.001-0.1).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.name", "model.width", "model.kernel_size", "model.norm",
          "model.norm_group_size", "mode", "fl.batch_size", "fl.local_steps",
          "client_opt.learning_rate")  # fmt: skip
POINTS = (
    (16, "plain_cnn", 8, 5, "none", 0, "fl", 36, 0, 0.01),
    (16, "plain_cnn", 8, 5, "none", 0, "centralized", 36, 0, 0.003),
    (16, "plain_cnn", 8, 5, "group", 4, "centralized", 36, 0, 0.001),
    (8, "plain_cnn", 32, 5, "group", 0, "centralized", 360, 1, 0.01),
    (8, "plain_cnn", 8, 3, "group", 0, "centralized", 36, 0, 0.003),
    (16, "plain_mlp", 32, 5, "group", 4, "centralized", 36, 0, 0.0003),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
