"""E5's one-step limit, done exactly (cpu): FedAvg with 1 local step a round and server momentum
0.9 (FedAvgM), which is large-batch SGD with momentum 0.9, against steps-matched CL.

    fedjax-deep train --config experiments/depth_divergence/configs/e5/server_momentum.py --workdir runs/e5_server_momentum

A post-hoc diagnostic, added after experiments/depth_divergence/configs/e5/local_steps_tuned.py's 1-step arm ended 7.1
± 1.7 points below steps-matched CL at depth 8, where the docstring there expected a match. The
mechanism it tests: each round starts the clients' optimizer afresh, so with 1 local step the
client's momentum 0.9 never acts and the 1-step arm is large-batch SGD *without* momentum. With
one step of ``lr * (g + wd * w)`` per client and server SGD of rate 1 and momentum 0.9 on the
averaged update, the server's velocity is ``lr`` times steps-matched CL's momentum buffer, so the
two runs are the same algorithm (up to how the 360 examples of a step are drawn: 36 per client
here, 360 from the union there). The arm is tuned like the others (0.03, 0.1, 0.3 on validation),
800 rounds, evaluation every 10, seeds 0-4; it is not used to choose anything else. 45 runs.
"""

from experiments.depth_divergence.common import e1_protocol

FIELDS = ("model.depth", "fl.local_steps", "num_rounds", "eval.every_rounds",
          "checkpoint.every_rounds", "server_opt.momentum", "client_opt.learning_rate")  # fmt: skip


def points():
    return tuple((depth, 1, 800, 10, 10, 0.9, lr)
                 for depth in (2, 8, 16) for lr in (0.03, 0.1, 0.3))  # fmt: skip


def get_config():
    config = e1_protocol()
    config.sweep = ((FIELDS, points()), ("seed", (0, 1, 2, 3, 4)))
    return config
