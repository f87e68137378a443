"""E1's grid-widening rule applied to experiments/depth_divergence/configs/e5/forty_steps_80_rounds.py (cpu): the
40-local-step, 80-round arm at depth 8 chose 0.1, the top of its grid (0.01, 0.03, 0.1), so it
runs one grid step further: 0.3, seeds 0-4.

    fedjax-deep train --config experiments/depth_divergence/configs/e5/forty_widen.py --workdir runs/e5_forty_widen

5 runs, about 4 minutes on two CPU cores. If 0.3 is chosen it is flagged and not widened further
(time).
"""

from experiments.depth_divergence.common import e1_protocol

FIELDS = ("model.depth", "fl.local_steps", "num_rounds", "eval.every_rounds",
          "checkpoint.every_rounds", "client_opt.learning_rate")  # fmt: skip
POINTS = ((8, 40, 80, 1, 1, 0.3),)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, POINTS), ("seed", (0, 1, 2, 3, 4)))
    return config
