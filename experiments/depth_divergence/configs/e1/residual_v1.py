"""E1's plain-vs-residual control with ResNet v1's order (cpu): ``relu(x + norm(conv(x)))`` at
depths 2, 8 and 16, FL and CL, under E1's comparison protocol.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/residual_v1.py --workdir runs/e1_residual_v1
    (then the ``compare`` command of experiments/depth_divergence/results/e1_final_mnist1d/README.md, with this workdir and
    model.skip_before_relu added to --group)

The residual control of experiments/depth_divergence/configs/e1/controls.py and experiments/depth_divergence/configs/e1/controls_depths.py
adds each layer's ReLU output to its input (``x + relu(norm(conv(x)))``): the sums of non-negative
outputs grow with depth, and that net trains worse than the plain one in CL at every depth, so it
could not answer "plain vs residual at equal depth". This one adds the input before the ReLU, as
ResNet v1 does (one convolution per block, so the conv count equals the plain net's; the same
GroupNorm, width 8, kernel 5). The protocol, fixed before any of these runs was looked at: seeds
0-4 (E1's split, partition and initialization; E1's plain runs are the baseline), 80 rounds, the
plateau rule, each arm tuned alone on validation from the 4-point grids of the depth controls, FL
(0.01, 0.03, 0.1, 0.3) and CL (0.003, 0.01, 0.03, 0.1); a grid end chosen is flagged ``*``
(widened only if time allows). The figure of merit: CL - FL against the plain net's at the same
depth, and against its own at depth 2, paired over seeds.

120 runs, about 25 minutes on two CPU cores.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.01, 0.03, 0.1, 0.3)
CL_LRS = (0.003, 0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "model.skip", "model.skip_before_relu", "mode", "client_opt.learning_rate")


def points():
    out = []
    for depth in (2, 8, 16):
        out += [(depth, True, True, "fl", lr) for lr in FL_LRS]
        out += [(depth, True, True, "centralized", lr) for lr in CL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
