"""E1 under the comparison protocol (cpu): FL, CL and steps-matched CL, each tuned, to a plateau.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/tuned.py --workdir runs/e1_tuned
    fedjax-deep compare runs/e1_tuned --reference mode=centralized,fl.batch_size=36

The protocol (today in fedjax_deep/analysis/), fixed before any run of this config was looked at:

- data: MNIST-1D, 10% of each class's training examples held out for validation (tuning reads only
  it); 10 IID clients of 360 signals;
- arms: FL (FedAvg, 1 local epoch of batch 36 = 10 steps per round); CL on the same examples per
  round (one epoch of the union, 100 steps of batch 36); steps-matched CL (10 steps of batch 360
  per round: FL's sequential step count, the large-batch baseline); each sees about 3,600
  examples a round (3,601 training signals: one client holds 361 and takes an 11th step of one);
- each arm at each depth picks its learning rate from (0.003, 0.01, 0.03, 0.1, 0.3) by mean
  validation accuracy over its last 5 evaluations (SGD momentum 0.9, weight decay 5e-4
  throughout); a choice at an end of the grid is flagged and the grid widened on that side (the
  first pass, without 0.3, chose 0.1 for FL and steps-matched CL at most depths);
- 40 rounds (40 epochs of data for FL and CL); an arm has plateaued when 5 evaluations gain less
  than 0.5 points over the 5 before (arms that have not are flagged in the report). At 40 rounds FL
  had plateaued in 1, 1, 2, 0 of 5 seeds, so the sweep was resumed to 80 rounds (every arm retuned
  at 80): ``num_rounds`` is 80 here;
- 5 paired seeds (a seed fixes the split, the partition and the initialization of every arm);
  reported per depth: the plateau test accuracy, the gap to CL with a paired 95% t-interval, rounds
  to reach 50% and 80% of CL's plateau accuracy, the gap in area under the learning curve, and the
  per-seed values (compare.json).

300 runs (4 depths x 3 arms x 5 learning rates x 5 seeds) in 12 shapes (the sweep axis). On two
CPU cores, shared with other work: 28 + 6 minutes to 40 rounds, 41 more to 80. Results:
experiments/depth_divergence/results/e1_tuned_mnist1d.
"""

from experiments.depth_divergence.common import cpu_mnist1d

DEPTHS = (2, 4, 8, 16)
ARMS = (("mode", "fl.batch_size", "fl.local_steps"),
        (("fl", 36, 0), ("centralized", 36, 0), ("centralized", 360, 1)))  # fmt: skip
LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3)
SEEDS = (0, 1, 2, 3, 4)


def get_config():
    config = cpu_mnist1d()
    config.data.validation_fraction = 0.1
    config.fl.local_epochs = 1
    config.num_rounds = 80
    config.sweep = (("model.depth", DEPTHS), ARMS, ("client_opt.learning_rate", LEARNING_RATES),
                    ("seed", SEEDS))  # fmt: skip
    return config
