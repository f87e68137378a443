"""E5's 40-local-step arm to a plateau (cpu): 40 local steps a round for 80 rounds, the rounds E1's
FL ran, at depths 2, 8 and 16.

    fedjax-deep train --config experiments/depth_divergence/configs/e5/forty_steps_80_rounds.py --workdir runs/e5_forty_80

experiments/depth_divergence/configs/e5/local_steps_tuned.py ran 40 local steps for 20 rounds (800 local steps, as
every E5 arm) and the arm had not plateaued (1, 0 and 2 of 5 seeds). The protocol's rule for an
arm that has not plateaued is a longer horizon (E1 went from 40 to 80 rounds the same way), so
this runs it for 80 rounds, retuned on validation: grids one step either side of the 20-round
choice, (0.03, 0.1, 0.3) at depth 2 and (0.01, 0.03, 0.1) at depths 8 and 16; seeds 0-4. It
compares with E1's FL at equal rounds (80; 4x the local computation), where the 20-round arm
compared at equal computation. 45 runs.
"""

from experiments.depth_divergence.common import e1_protocol

FIELDS = ("model.depth", "fl.local_steps", "num_rounds", "eval.every_rounds",
          "checkpoint.every_rounds", "client_opt.learning_rate")  # fmt: skip
GRIDS = {2: (0.03, 0.1, 0.3), 8: (0.01, 0.03, 0.1), 16: (0.01, 0.03, 0.1)}


def points():
    return tuple((depth, 40, 80, 1, 1, lr) for depth, grid in GRIDS.items() for lr in grid)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", (0, 1, 2, 3, 4)))
    return config
