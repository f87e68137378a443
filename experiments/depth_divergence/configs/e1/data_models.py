"""E1's data and model controls, and the paper's remedies at convergence (cpu): full-data clients
at every depth; the plain MLP at every depth; width 32 and kernel 3 at depth 8 against CL and
steps-matched CL; FedProx, SCAFFOLD and FedDyn at depth 8. Under E1's comparison protocol.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/data_models.py --workdir runs/e1_data_models
    (then the ``compare`` command of experiments/depth_divergence/configs/e1/controls.py, which reads all three sweeps)

The protocol of ``experiments/depth_divergence/configs/e1/tuned.py`` (validation split, 5 paired seeds, 80 rounds, the
plateau rule, each arm tuned alone), fixed before any of these runs was looked at; the same seeds
give the same split, partition and initialization as E1, whose runs are the baseline:

- full-data clients (``data.partition='full'``) at depths 2, 4, 8 and 16, FL only: every client
  draws its 10 local steps of batch 36 from all 3,601 training signals instead of its own 360, so
  the step count, batch and examples per round are E1's FL's and only the client data differ;
- the plain MLP (``plain_mlp``: width 32, GroupNorm with 4 channels per group) at depths 2, 4, 8
  and 16, FL and CL;
- remedies at depth 8, each FL, CL and steps-matched CL (10 steps of batch 360 per round): width
  32 (kernel 5), and kernel 3 (width 8; receptive field 17 instead of 33);
- learning-rate grids, per arm: FL and steps-matched CL (0.03, 0.1, 0.3), CL (0.01, 0.03, 0.1), one
  step either side of what E1 chose; an arm that chooses a grid's end is flagged and, as
  in E1, run again one step further on that side (configs/e1/widen.py).

FedProx, SCAFFOLD and FedDyn at depth 8 are in experiments/depth_divergence/configs/e1/controls.py. 270 runs. Expected
time on two CPU cores, alone: about 50 minutes. Results: experiments/depth_divergence/results/e1_controls_mnist1d.
"""

from experiments.depth_divergence.common import e1_protocol

FL_LRS = (0.03, 0.1, 0.3)
CL_LRS = (0.01, 0.03, 0.1)
SEEDS = (0, 1, 2, 3, 4)
FIELDS = ("model.depth", "model.name", "model.width", "model.kernel_size", "model.norm_group_size",
          "mode", "data.partition", "fl.batch_size", "fl.local_steps", "client_opt.learning_rate")  # fmt: skip
FL = ("fl", "iid", 36, 0)
CL = ("centralized", "iid", 36, 0)
STEPS_MATCHED = ("centralized", "iid", 360, 1)
FULL_DATA = ("fl", "full", 36, 10)


def points():
    out = []
    for depth in (2, 4, 8, 16):
        out += [(depth, "plain_cnn", 8, 5, 0, *FULL_DATA, lr) for lr in FL_LRS]
    for depth in (2, 4, 8, 16):
        out += [(depth, "plain_mlp", 32, 5, 4, *FL, lr) for lr in FL_LRS]
        out += [(depth, "plain_mlp", 32, 5, 4, *CL, lr) for lr in CL_LRS]
    for width, kernel in ((32, 5), (8, 3)):
        out += [(8, "plain_cnn", width, kernel, 0, *FL, lr) for lr in FL_LRS]
        out += [(8, "plain_cnn", width, kernel, 0, *CL, lr) for lr in CL_LRS]
        out += [(8, "plain_cnn", width, kernel, 0, *STEPS_MATCHED, lr) for lr in FL_LRS]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", SEEDS))
    return config
