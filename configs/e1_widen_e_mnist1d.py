"""E1's grid-widening rule applied to configs/e1_remedies_mnist1d.py (cpu): the arms that chose an
end of their grid, each run one grid step further on that side.

    fedjax-deep train --config configs/e1_widen_e_mnist1d.py --workdir runs/e1_widen_e

Grids step by about 3x (..., 0.001, 0.003, 0.01, 0.03, 0.1, 0.3). 15 runs. An arm that chooses
the new end again is flagged in the report and not widened further (time).

- CNN with block kernel 3 at depth 16: CL 0.003 (chose 0.01 of 0.01-0.1), steps-matched CL 0.01
  (chose 0.03 of 0.03-0.3);
- CNN of width 32 at depth 2: CL 0.003 (chose 0.01 of 0.01-0.1).
"""

from fedjax_deep.presets import e1_protocol

FIELDS = ("model.depth", "model.width", "model.kernel_size", "model.stem_stride", "mode",
          "fl.batch_size", "fl.local_steps", "client_opt.learning_rate")  # fmt: skip
POINTS = (
    (16, 8, 3, 1, "centralized", 36, 0, 0.003),
    (16, 8, 3, 1, "centralized", 360, 1, 0.01),
    (2, 32, 5, 1, "centralized", 36, 0, 0.003),
)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
