"""E7 at forks (cpu): a null that can differ from FL, and the accuracy that averaging costs, per layer.

    fedjax-deep train --config experiments/depth_divergence/configs/e7/forks.py --workdir runs/e7_forks
    fedjax-deep train --config experiments/depth_divergence/configs/e7/forks.py:extend --workdir runs/e7_forks

Issue 23, item 4. Protocol, written and committed before any run of this file (2026-12-07):

- regime: e1/paper_regime.py's (MNIST-1D, 10% validation split, 10 IID clients of 360 signals,
  plain 1-D CNN of width 8, kernel 5, GroupNorm, no skips, at depths 2, 8 and 16; FedAvg with 8
  local epochs of batch 36 = 80 local steps a round; SGD momentum 0.9, weight decay 5e-4; 40
  rounds); FL only;
- forks (``fl.fork_rounds`` 1, 10 and 40, and ``fl.fork_last``: the last round also when a run is
  extended): from FL's global model at the start of the round, the round's 10 FL clients (their
  own shards) against 10 null clients on the whole training set (3,600 signals; the same 80 steps
  of batch 36, the same start, a fresh optimizer state, keys folded from the round key with a fork
  tag), never averaged. Per layer: the null's ``U_l`` and ``D_l``, FL's from the same start, and
  FL / null (``fork/<layer>/update_ratio``, ``relative_ratio``); linear CKA on the first 256 test
  signals (``fork/<layer>/cka_ratio``). An FL client sees its 360 signals 8 times, a null client
  2,880 of the 3,600 once: here the null can differ from FL (at 1 local epoch it could not);
- the averaging penalty at every evaluation (``fl.averaging_penalty``): the clients' mean test and
  validation accuracy before averaging minus the averaged model's (``eval/averaging_penalty``);
- which layers' averaging costs accuracy, at each fork: models with the averaged weights in layers
  1..k and each client's own in the rest (``fork/mix/prefix_<k>/accuracy``), the last k layers
  averaged (``suffix_<k>``), one layer alone (``only_<l>``); the mean over the 10 clients of test
  accuracy. "Divergence accumulates toward the input" predicts that averaging the input-side
  layers costs the most at depth 16;
- seeds 2-9 (paper_regime's fresh confirmation seeds, never used to tune), 24 runs.

Learning rates: FL's placeholder 0.01 at every depth (``FL_RATE``); the lead sets them from
e1/paper_regime.py's tuning (FL's choice on validation, per depth) before the first run, and
records that change in this docstring. Set 2026-12-08, before the first run: 0.1 at depths 2 and 8
(tune chose 0.1, the grid's top, at both; widen's 0.3 scored 0.50 and 0.10 on validation). Depth
16 joins the sweep as a point added once tune has chosen its rate (a resume runs the new point):
0.03, added 2026-12-08 before its first run (validation 0.86 against 0.76 at 0.1 and 0.73 at 0.01).
These runs are also FL's confirmation arm on the fresh seeds: forks and the penalty leave the
trajectory bit for bit (tests/test_forks.py), so e1/paper_regime.py's ``confirm`` runs CL only. Compute budget: a paper_regime run (about 70 s at 40
rounds on two quiet cores) plus its forks. A fork costs one round's local training for the null
and the mixes' evaluations (3L mixed models, L layers with the head, for each of the 10 clients
on 1,000 test signals): measured at depth 16 on the shared machine (load ~15), 103 s for a fork
against 16 s for a round, about 7 rounds, falling with depth (the mixes grow as L^2). Three forks
a run: about +50% at depth 16, +25% at depth 8; about 60 CPU-minutes in all.
Results: results/e7_forks_mnist1d.
"""

from experiments.depth_divergence.configs.e1.paper_regime import regime

# FL's rate per depth, chosen by e1/paper_regime.py (tune, then widen) on validation accuracy.
FL_RATE = {2: 0.1, 8: 0.1, 16: 0.03}
SEEDS = (2, 3, 4, 5, 6, 7, 8, 9)
EXTEND_DEPTHS, EXTEND_ROUNDS = (2, 16), 80  # stage extend: e1/paper_regime.py's docstring says why
# Stage extend-d8 (the next session, before its run): the same step for depth 8.


def get_config(stage: str = "confirm"):
    from fedjax_deep.config import ConfigError

    if stage not in ("confirm", "extend", "extend-d8"):
        raise ConfigError("stage", stage, "choose confirm (40 rounds), extend (80, depths 2, "
                          "16) or extend-d8 (80, depth 8)")  # fmt: skip
    config = regime()
    config.fl.fork_rounds = (1, 10, 40)
    config.fl.fork_last = True
    config.fl.averaging_penalty = True
    config.fl.cka_probe = 256
    rates = tuple(FL_RATE.items())
    if stage.startswith("extend"):  # 40 more rounds; fl.fork_last forks again at round 80
        config.num_rounds = EXTEND_ROUNDS
        depths = EXTEND_DEPTHS if stage == "extend" else (8,)
        rates = tuple((d, r) for d, r in rates if d in depths)
    config.sweep = ((("model.depth", "client_opt.learning_rate"), rates), ("seed", SEEDS))
    return config
