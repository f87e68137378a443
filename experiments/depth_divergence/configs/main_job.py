"""The main job (cpu): the paper's regime, 8 local epochs a round, FL against CL at depths 2 and 8
(``:deep``: 2 and 16), with the averaging penalty at every evaluation and, at the last round, the
accuracy that averaging each layer costs.

    fedjax-deep train --config experiments/depth_divergence/configs/main_job.py --workdir runs/main_job
    fedjax-deep train --config experiments/depth_divergence/configs/main_job.py:deep --workdir runs/main_job_deep

A subset of the study's 8-epoch confirmation runs (configs/e1/paper_regime.py:confirm for CL,
configs/e7/forks.py for FL), so it reproduces their numbers seed for seed:

- data: MNIST-1D, 10% of the training signals held out for validation; 10 IID clients of 360;
- model: plain 1-D CNN (width 8, kernel 5, GroupNorm, no skips) at depths 2 and 8 (``:deep``: 2
  and 16; depth 16 costs about twice depth 8, so ``:deep`` does not fit the main job's 10 minutes
  on two CPU cores: its depth-2 arms took 2.3 minutes and its depth-16 FL arm about 7);
- arms: FL (FedAvg, 8 local epochs of batch 36 = 80 local steps a round) and CL on the same
  examples (800 steps of batch 36 a round), SGD momentum 0.9, weight decay 5e-4, each at the rate
  e1/paper_regime.py chose for it on validation (tune, then widen; ``CHOSEN``);
- 40 rounds (the paper's); seeds 2, 3 and 4 (confirmation seeds, never used to tune);
- FL logs ``eval/averaging_penalty`` (the clients' mean test accuracy before averaging minus the
  averaged model's) at every evaluation and forks at the last round: models with the averaged
  weights in some layers and each client's own in the rest (``fedjax-deep forks``'s report).

It writes the sweep report (report.md), the comparison (compare.md: the end value, whether the
plateau is certified at the last round or FL is still rising, paired gaps, rounds to 80% of CL;
curves.png) and the forks report (forks.md: the penalty, each layer's averaging cost, the input
half against the output half; averaging_penalty.png, layer_cost.png).
"""

from experiments.depth_divergence.configs.e1 import paper_regime

# depth -> (FL, CL) learning rates chosen by e1/paper_regime.py on validation accuracy.
CHOSEN = {2: (0.1, 0.03), 8: (0.1, 0.003), 16: (0.03, 0.01)}
DEPTHS = {"default": (2, 8), "deep": (2, 16)}
SEEDS = (2, 3, 4)
FIELDS = ("model.depth", "mode", "client_opt.learning_rate", "fl.averaging_penalty",
          "fl.fork_last", "fl.cka_probe")  # fmt: skip


def points(depths=DEPTHS["default"]):
    out = []
    for depth in depths:
        fl, cl = CHOSEN[depth]
        out += [(depth, "fl", fl, True, True, 256), (depth, "centralized", cl, False, False, 0)]
    return tuple(out)


def get_config(depths: str = "default"):
    from fedjax_deep.config import ConfigError

    if depths not in DEPTHS:
        raise ConfigError("depths", depths, "choose default (depths 2, 8) or deep (2, 16)")
    config = paper_regime.regime()
    config.sweep = ((FIELDS, points(DEPTHS[depths])), ("seed", SEEDS))
    config.compare.reference = "mode=centralized"
    return config
