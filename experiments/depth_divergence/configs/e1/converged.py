"""The main job (cpu, under 10 minutes): FL against CL and steps-matched CL at depths 2, 8 and 16,
each arm at the learning rate E1's comparison protocol chose for it, trained to a plateau, with the
null reference's per-layer divergence.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/converged.py --workdir runs/e1_converged

This is E1 (experiments/depth_divergence/configs/e1/tuned.py, experiments/depth_divergence/results/e1_tuned_mnist1d) without its tuning:
the learning rates below are the ones that sweep chose on the validation split at 80 rounds (5
learning rates per arm and depth, 5 seeds), so this job reruns E1's chosen points (45 runs, and 15
one-round runs of the null reference) and reproduces its numbers (same seeds, same split). It writes the sweep report and the comparison
(compare.md: plateau accuracy, paired gaps, rounds to 50% and 80% of CL, area gaps; curves.png:
learning curves with seed bands; divergence.png: the scale-free update dispersion per layer;
null_ratio.png: FL's per-layer divergence after round 1 over the null reference's).

- data: MNIST-1D, 10% of the training signals held out for validation; 10 IID clients of 360;
- arms: FL (FedAvg, 1 local epoch of batch 36 = 10 steps a round); CL (the same examples per
  round, 100 steps of batch 36); steps-matched CL (10 steps of batch 360 a round); the null
  reference (10 SGD runs from the FL initialization on all the data, 10 steps of batch 36, never
  averaged: only its divergence after round 1 is used, so it runs one round);
- SGD momentum 0.9, weight decay 5e-4; 80 rounds; seeds 0-4.
"""

from experiments.depth_divergence.common import e1_protocol

# depth -> (CL, steps-matched CL, FL) learning rates chosen by E1's protocol (compare.md there).
CHOSEN = {2: (0.03, 0.3, 0.1), 8: (0.01, 0.1, 0.1), 16: (0.01, 0.1, 0.03)}
FIELDS = ("model.depth", "mode", "data.partition", "fl.batch_size", "fl.local_steps",
          "num_rounds", "client_opt.learning_rate")  # fmt: skip


def points():
    out = []
    for depth, (cl, steps_matched, fl) in CHOSEN.items():
        out += [(depth, "fl", "iid", 36, 0, 80, fl), (depth, "centralized", "iid", 36, 0, 80, cl),
                (depth, "centralized", "iid", 360, 1, 80, steps_matched),
                (depth, "independent", "full", 36, 10, 1, fl)]  # fmt: skip
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", (0, 1, 2, 3, 4)))
    config.compare.reference = "mode=centralized,fl.batch_size=36"
    return config
