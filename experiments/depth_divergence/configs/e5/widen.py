"""E1's grid-widening rule applied to experiments/depth_divergence/configs/e5/local_steps_tuned.py (cpu): the arms that
chose an end of their grid, each run one grid step further on that side.

    fedjax-deep train --config experiments/depth_divergence/configs/e5/widen.py --workdir runs/e5_widen

Grids step by about 3x. 15 runs. An arm that chooses the new end again is flagged and not widened
further (time).

- 40 local steps a round (20 rounds) at depths 8 and 16: 0.01 (each chose 0.03 of 0.03-1.0);
- 1 local step a round (800 rounds) at depth 2: 3.0 (chose 1.0 of 0.03-1.0).
"""

from experiments.depth_divergence.common import e1_protocol

FIELDS = ("model.depth", "fl.local_steps", "num_rounds", "eval.every_rounds",
          "checkpoint.every_rounds", "client_opt.learning_rate")  # fmt: skip
POINTS = ((2, 1, 800, 10, 10, 3.0), (8, 40, 20, 1, 1, 0.01), (16, 40, 20, 1, 1, 0.01))


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
