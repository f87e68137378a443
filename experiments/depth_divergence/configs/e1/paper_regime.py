"""E1 in the paper's regime (cpu): 8 local epochs a round, FL against CL and steps-matched CL.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:tune --workdir runs/e1_paper_tune
    fedjax-deep compare runs/e1_paper_tune --reference mode=centralized,fl.batch_size=36

Issue 23's protocol, written and committed before any run of this file (2026-12-07):

- data: MNIST-1D, 10% of each class's training examples held out for validation (tuning reads only
  it); 10 IID clients of 360 signals; plain 1-D CNN (width 8, kernel 5, GroupNorm, no skips) at
  depths 2, 8 and 16;
- arms, each seeing 8 epochs of the training data a round: FL (FedAvg, 8 local epochs of batch 36
  = 80 local steps a round, the paper's and its authors' code's 8 local epochs); CL on the same
  examples (800 steps of batch 36 a round); steps-matched CL (80 steps of batch 360 a round: FL's
  sequential step count);
- SGD momentum 0.9, weight decay 5e-4 throughout;
- stage ``tune``: each arm at each depth picks its learning rate from (0.003, 0.01, 0.03, 0.1) by
  mean validation accuracy over its last 5 evaluations, on 2 seeds (0, 1), at 40 rounds (the
  paper's); a choice at an end of the grid is widened one step on that side (a later pass, named
  as such); 72 runs, 9 shapes;
- stage ``confirm`` (its own file member, written once ``tune`` has chosen): the chosen rates on 8
  fresh seeds (2-9), never used for tuning;
- the plateau (fedjax_deep.analysis, ``certify_plateau``): certified only if at the last round
  the mean test accuracy of the last 10 evaluations exceeds that of the 10 before by less than
  0.5 points; an arm that fails is resumed with 40 more rounds, up to a cap of 160 rounds, and is
  otherwise reported as still rising with its slope. A saturating fit a + b exp(-r / tau) per seed
  is the second reading (its asymptote, paired intervals of asymptotes).

Compute budget: about 70 s a run on two quiet CPU cores at 40 rounds (four times the 1-epoch main
job's runs), so about 85 CPU-minutes for ``tune``. Results: results/e1_paper_regime_mnist1d.

Recorded after ``tune`` ran (2026-12-08): the budget was low. Measured at 40 rounds, one run took
about 11 s at depth 2, 60-240 s at depth 8 (the machine was shared) and 120 s at depth 16 (FL, on a
quiet machine). Depths 2 and 8 chose at a grid end for FL (0.1 at both; at depth 2 by 0.03
points of validation accuracy over 0.03) and for CL at depth 8 (0.003), so stage ``widen`` runs
the next rate on that side (FL 0.3, CL 0.001) on the tuning seeds, as the protocol says:

    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:widen --workdir runs/e1_paper_widen
    fedjax-deep compare runs/e1_paper_tune runs/e1_paper_widen --reference mode=centralized,fl.batch_size=36

Widen kept every choice (validation accuracy, mean of 2 seeds: depth 2 FL 0.3 scored 0.50 against
0.1's 0.85; depth 8 FL 0.3 diverged, 0.10; depth 8 CL 0.001 scored 0.85 against 0.003's 0.96).
Stage ``confirm`` (committed before its run, 2026-12-08) runs CL's and steps-matched CL's chosen
rates on seeds 2-9; FL's confirmation runs are configs/e7/forks.py's:

    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:confirm --workdir runs/e1_paper_confirm
    fedjax-deep compare runs/e1_paper_confirm runs/e7_forks --reference mode=centralized,fl.batch_size=36

Recorded 2026-12-08, after depth 16's CL and FL were tuned (CL 0.01: validation 0.95 against 0.92
at 0.003; FL 0.03: 0.86 against 0.76 at 0.1; both interior): CL at depth 16 joins ``confirm``
(placed second, so it runs before depth 8). **Post hoc, for compute:** tune was stopped before
steps-matched CL at depth 16 ran (its 8 runs and their confirmation would not fit this session's
CPU time), so the 8-epoch regime has no steps-matched CL at depth 16. At depths 2 and 8, on the
tuning seeds, steps-matched CL (80 steps of batch 360 a round) ended 11 and 8 points *below* FL:
this cut was made after seeing that, and it is named wherever the regime is reported.

Recorded 2026-12-08 before the extension ran: at 40 rounds few seeds certify (FL 3/8 and 2/8 at
depths 2 and 8, 0/8 at depth 16, rising 0.3-1.8 points a round; CL 5/8 at depths 2 and 8), so the
extension rule applies to every arm. This session's CPU time holds its first step (to 80 rounds)
for FL and CL at depths 2 and 16 only, stage ``extend`` here and in configs/e7/forks.py (same
workdirs: a resume with more rounds). **Not extended, for compute:** depth 8 and steps-matched CL;
they are reported at 40 rounds, as rising where they rise.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:extend --workdir runs/e1_paper_confirm
    fedjax-deep train --config experiments/depth_divergence/configs/e7/forks.py:extend --workdir runs/e7_forks

Recorded 2026-12-08 in the next session, before any of these runs: its CPU time holds two of the
cuts above. (1) Steps-matched CL at depth 16: ``tune``'s command is resumed as written (its
finished points are left as they are; the 8 cut ones run), and stage ``confirm-sm16`` (its own
workdir: ``confirm``'s holds extended runs) runs the rate it chooses on seeds 2-9. (2) The
extension rule's first step (to 80 rounds) for depth 8 and for steps-matched CL at depths 2 and 8:
stage ``extend-d8`` here and in configs/e7/forks.py (FL). Steps-matched CL at depth 16 is not
extended (no time).

Recorded 2026-12-08 after the resumed tune ran: steps-matched CL at depth 16 chose 0.01 (validation
54.8, against 54.3 at 0.003, 12.5 at 0.03, 9.9 at 0.1; interior), now ``CONFIRM_SM16``.

    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:tune --workdir runs/e1_paper_tune
    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:confirm-sm16 --workdir runs/e1_paper_confirm_sm16
    fedjax-deep train --config experiments/depth_divergence/configs/e1/paper_regime.py:extend-d8 --workdir runs/e1_paper_confirm
    fedjax-deep train --config experiments/depth_divergence/configs/e7/forks.py:extend-d8 --workdir runs/e7_forks
"""

from experiments.depth_divergence.common import cpu_mnist1d

DEPTHS = (2, 8, 16)
ARMS = (("mode", "fl.batch_size"), (("fl", 36), ("centralized", 36), ("centralized", 360)))
LEARNING_RATES = (0.003, 0.01, 0.03, 0.1)
STAGES = {"tune": (0, 1), "widen": (0, 1), "confirm": (2, 3, 4, 5, 6, 7, 8, 9),
          "extend": (2, 3, 4, 5, 6, 7, 8, 9), "confirm-sm16": (2, 3, 4, 5, 6, 7, 8, 9),
          "extend-d8": (2, 3, 4, 5, 6, 7, 8, 9)}  # fmt: skip
# The extension rule's first step (40 more rounds) for CL at depths 2 and 16 (see the docstring).
EXTEND = ((2, "centralized", 36, 0.03), (16, "centralized", 36, 0.01))
EXTEND_ROUNDS = 80
# The same first step for depth 8's CL and steps-matched CL at depths 2 and 8 (the next session).
EXTEND_D8 = ((8, "centralized", 36, 0.003), (2, "centralized", 360, 0.01),
             (8, "centralized", 360, 0.01))  # fmt: skip
# Steps-matched CL at depth 16: the rate tune chooses, on the fresh seeds (set once tune has run).
CONFIRM_SM16 = ((16, "centralized", 360, 0.01),)
POINT_FIELDS = ("model.depth", "mode", "fl.batch_size", "client_opt.learning_rate")
# (depth, mode, batch, rate): one step past the grid end that tune chose, on the tuning seeds.
WIDEN = ((2, "fl", 36, 0.3), (8, "fl", 36, 0.3), (8, "centralized", 36, 0.001))


# (depth, mode, batch, rate): CL's and steps-matched CL's chosen rates (tune and widen, on
# validation), on the fresh seeds. FL's confirmation runs are configs/e7/forks.py's (same seeds,
# same rates; forks leave FL's trajectory bit for bit). Depth 16 joins once tune has chosen.
CONFIRM = ((2, "centralized", 36, 0.03), (16, "centralized", 36, 0.01),
           (8, "centralized", 36, 0.003), (2, "centralized", 360, 0.01),
           (8, "centralized", 360, 0.01))  # fmt: skip


def regime():
    """The regime's settings without a sweep (configs/e7/forks.py and configs/main_job.py share it)."""
    config = cpu_mnist1d()
    config.data.validation_fraction = 0.1
    config.fl.local_epochs = 8
    config.fl.batch_size = 36
    config.num_rounds = 40
    config.checkpoint.every_rounds = 5
    return config


def get_config(stage: str = "tune"):
    from fedjax_deep.config import ConfigError

    if stage not in STAGES:
        raise ConfigError("stage", stage, f"choose one of {', '.join(STAGES)}")
    config = regime()
    if stage == "confirm-sm16" and not CONFIRM_SM16:
        raise ConfigError("stage", stage, "resume stage tune first; CONFIRM_SM16 holds no rate")
    if stage != "tune":
        points = {"widen": WIDEN, "confirm": CONFIRM, "extend": EXTEND, "extend-d8": EXTEND_D8,
                  "confirm-sm16": CONFIRM_SM16}[stage]  # fmt: skip
        config.sweep = ((POINT_FIELDS, points), ("seed", STAGES[stage]))
        if stage.startswith("extend"):
            config.num_rounds = EXTEND_ROUNDS
        return config
    config.sweep = (("model.depth", DEPTHS), ARMS, ("client_opt.learning_rate", LEARNING_RATES),
                    ("seed", STAGES[stage]))  # fmt: skip
    return config
