"""E2 in representation space (cpu): linear CKA between client models' layer activations, FL
against the null reference, at depths 2, 4, 8 and 16.

    fedjax-deep train --config experiments/depth_divergence/configs/e2/cka.py --workdir runs/e2_cka

Fixed before any run of it was looked at. FL (FedAvg, 10 IID clients of 360 MNIST-1D signals, 1
local epoch of batch 36 a round, 80 rounds, seeds 0-4) at the learning rate E1's comparison
protocol chose for it at each depth (experiments/depth_divergence/results/e1_tuned_mnist1d: 0.1, 0.1, 0.1, 0.03), and the
null reference (10 SGD runs from the same initialization on all the data, as many steps, never
averaged; one round of 10 steps of batch 36) at the same rate. Every round logs, per layer, the mean pairwise linear CKA
of the 10 trained client models' activations on the first 256 test signals
(``fl.cka_probe``; 1 = the same representation up to rotation and scale). The questions: after
round 1, is FL's similarity below the null's (drift beyond SGD noise) in any layer, and does it
fall from the output toward the input or with depth (accumulation)? The comparison
(``compare.md``'s CKA table, ``cka.png``) reads CKA after round 1 and after the last round. 40
runs.
"""

from experiments.depth_divergence.common import e1_protocol

FL_RATE = {2: 0.1, 4: 0.1, 8: 0.1, 16: 0.03}  # E1's choice on validation, per depth
FIELDS = ("model.depth", "mode", "data.partition", "fl.local_steps", "num_rounds",
          "client_opt.learning_rate")  # fmt: skip


def points():
    out = []
    for depth, lr in FL_RATE.items():
        out += [(depth, "fl", "iid", 0, 80, lr), (depth, "independent", "full", 10, 1, lr)]
    return tuple(out)


def get_config():
    config = e1_protocol()
    config.fl.cka_probe = 256
    config.sweep = ((FIELDS, points()), ("seed", (0, 1, 2, 3, 4)))
    config.compare.reference = "mode=fl"
    return config
