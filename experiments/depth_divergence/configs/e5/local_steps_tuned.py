"""E5 under E1's comparison protocol (cpu): local steps per round at a fixed budget of local steps,
FL at depths 2, 8 and 16.

    fedjax-deep train --config experiments/depth_divergence/configs/e5/local_steps_tuned.py --workdir runs/e5_tuned
    fedjax-deep compare runs/e1_tuned runs/e5_tuned --out runs/e5_compare \\
        --reference mode=centralized,fl.batch_size=36

The protocol of ``experiments/depth_divergence/configs/e1/tuned.py``, fixed before any of these runs was looked at; the
same seeds (0-4) give the same split, partition and initialization as E1, whose arms are the
reference: CL on the same examples, steps-matched CL (800 steps of batch 360) and FL with 10 local
steps (one epoch of batch 36) a round for 80 rounds. Every client takes 800 local steps of batch 36
in all, whatever the split into rounds:

- 1 local step a round, 800 rounds: the limit in which FedAvg is large-batch SGD (one step of
  batch 36 on each of 10 clients is one step of batch 360 on the union), so it should match
  steps-matched CL;
- 40 local steps (4 epochs) a round, 20 rounds;
- 10 local steps a round, 80 rounds: E1's FL arm.

Evaluation every 80 local steps (every 10 rounds at 1 step, every round at 10 and 40 steps), so
the plateau rule (5 evaluations gaining under 0.5 points over the 5 before) reads 1, 8 and 32
epochs of local work for the three; checkpoints at every evaluation. Learning rates (0.03, 0.1,
0.3, 1.0) for both new arms, each tuned alone on validation: the 1-step arm's limit,
steps-matched CL, chose E1's largest rate (0.3) at depth 2, so the grid reaches 1.0. Rounds to
50%/80% in compare.md count communication rounds, so they are 10x larger for the 1-step arm by
construction; the plateau gap and the curve area (mean accuracy over the horizon) compare like with
like. 120 runs.
"""

from experiments.depth_divergence.common import e1_protocol

DEPTHS = (2, 8, 16)
# (local steps, rounds, eval and checkpoint cadence in rounds)
SCHEDULES = ((1, 800, 10), (40, 20, 1))
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0)
FIELDS = ("model.depth", "fl.local_steps", "num_rounds", "eval.every_rounds",
          "checkpoint.every_rounds", "client_opt.learning_rate")  # fmt: skip


def points():
    return tuple((depth, k, rounds, every, every, lr)
                 for depth in DEPTHS for k, rounds, every in SCHEDULES
                 for lr in LEARNING_RATES)  # fmt: skip


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", (0, 1, 2, 3, 4)))
    return config
