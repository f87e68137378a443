"""Forks and the averaging penalty (fedjax_deep.fl.forks): the null equals FL on FL's data and keys,
mixes at their ends are the averaged and the client models, and a run with forks and the penalty
has the trajectory of a run without them, bit for bit (issue 23, item 4)."""

import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import model_config
from fedjax_deep import cli, experiment, train
from fedjax_deep.config import ConfigError, default_config, validate
from fedjax_deep.data import load_digits, stack_clients
from fedjax_deep.fl import forks, init_sim_state, make_round
from fedjax_deep.metrics import batch_eval_data, make_evaluate
from fedjax_deep.models import build_model

STEPS, BATCH, NUM_CLIENTS = 2, 16, 3


@pytest.fixture(scope="module")
def digits():
    return load_digits(np.random.default_rng(0))


@pytest.fixture(scope="module")
def tiny(digits):
    """A depth-2 BatchNorm CNN (so statistics are mixed too) and its first round's trained clients
    on full-data clients (each holds the whole training set), with the round's inputs."""
    model, params, model_state = build_model(
        model_config(depth=2, width=4, norm="batch"), digits.input_shape, 10, jax.random.key(0)
    )
    opt = optax.sgd(0.05, momentum=0.9)
    n = len(digits.train_y)
    data = stack_clients(digits.train_x, digits.train_y, [np.arange(n)] * NUM_CLIENTS)
    state = init_sim_state(params, model_state, optax.sgd(1.0))
    start = forks.fork_start(state)
    round_fn = jax.jit(make_round(model, opt, optax.sgd(1.0), batch_size=BATCH,
                                  num_local_steps=STEPS, return_clients=True))  # fmt: skip
    key = jax.random.key(7)
    new_state, metrics, fl = round_fn(state, data, key)
    return dict(model=model, opt=opt, state=state, start=start, data=data, key=key,
                new_state=new_state, metrics=metrics, fl=fl,
                test=batch_eval_data(digits.test_x, digits.test_y, 128))  # fmt: skip


def test_the_round_returns_its_clients_before_averaging(tiny):
    fl = tiny["fl"]
    assert jax.tree.leaves(fl.params)[0].shape[0] == NUM_CLIENTS
    np.testing.assert_allclose(np.asarray(fl.weights), np.full(NUM_CLIENTS, 1 / NUM_CLIENTS))
    # The clients drew different batches, so they differ.
    kernel = np.asarray(fl.params["conv_0"]["kernel"])
    assert not np.array_equal(kernel[0], kernel[1])


def test_returning_the_clients_leaves_the_round_bit_for_bit(tiny):
    """The static flag adds an output and changes nothing else (the fast sibling of the slow
    end-to-end comparison below)."""
    plain = jax.jit(make_round(tiny["model"], tiny["opt"], optax.sgd(1.0), batch_size=BATCH,
                               num_local_steps=STEPS))  # fmt: skip
    new_state, metrics = plain(tiny["state"], tiny["data"], tiny["key"])
    chex.assert_trees_all_equal((new_state, metrics), (tiny["new_state"], tiny["metrics"]))


def test_null_clients_with_fl_data_and_keys_give_ratio_one_exactly(tiny, digits):
    """Full-data FL clients against null clients on the shared training set with the round's own
    key (a fork folds in FORK_TAG instead): the same local training, so every ratio is 1."""
    null_round = jax.jit(forks.make_null_round(tiny["model"], tiny["opt"], batch_size=BATCH,
                                               num_local_steps=STEPS))  # fmt: skip
    data = tiny["data"]
    null = null_round(tiny["start"], {"x": jnp.asarray(digits.train_x),
                                      "y": jnp.asarray(digits.train_y)},
                      data.num_examples, data.client_ids, tiny["key"])  # fmt: skip
    chex.assert_trees_all_equal(null.params, tiny["fl"].params)
    model = tiny["model"]
    probe = jnp.asarray(digits.test_x[:8])

    @jax.jit
    def divergence(start, fl, null):
        reps = [jax.vmap(lambda p, s: model.representations(p, s, probe))(m.params, m.model_state)
                for m in (fl, null)]  # fmt: skip
        return forks.fork_divergence(start.params, fl, null, model.layers, *reps)

    out = divergence(tiny["start"], tiny["fl"], null)
    ratios = {k: float(v) for k, v in out.items() if k.endswith("_ratio")}
    layers = ("conv_0", "conv_1", "head", "mean")
    assert set(ratios) == {f"fork/{layer}/{m}_ratio" for layer in layers
                           for m in ("update", "relative", "cka")}  # fmt: skip
    assert all(r == 1.0 for r in ratios.values()), ratios
    # FL's values are the round's own divergence (up to the float order of another program).
    assert float(out["fork/conv_1/fl_update"]) == pytest.approx(
        float(tiny["metrics"]["divergence/conv_1/kernel/update"]), rel=1e-6
    )
    # The fork's own key draws other batches: the null then differs from FL.
    other = null_round(tiny["start"], {"x": jnp.asarray(digits.train_x),
                                       "y": jnp.asarray(digits.train_y)},
                       data.num_examples, data.client_ids,
                       jax.random.fold_in(tiny["key"], forks.FORK_TAG))  # fmt: skip
    assert not np.array_equal(other.params["conv_0"]["kernel"], null.params["conv_0"]["kernel"])


def test_mixes_at_their_ends_are_the_averaged_and_the_client_models(tiny):
    model, fl, test = tiny["model"], tiny["fl"], tiny["test"]
    names, masks = forks.mix_masks(len(model.layers))
    assert names == ["prefix_0", "prefix_1", "prefix_2", "prefix_3", "suffix_1", "suffix_2",
                     "only_1", "only_2", "only_3"]  # fmt: skip
    assert masks[names.index("suffix_1")].tolist() == [False, False, True]
    params0 = jax.tree.map(lambda x: x[0], fl.params)
    state0 = jax.tree.map(lambda x: x[0], fl.model_state)
    # The first two clients' mixes (fl.fork_mix_clients=2), with the average of all three.
    mix = jax.jit(forks.make_mix_accuracies(model, params0, state0, mix_clients=2))
    acc = np.asarray(mix(fl, jnp.asarray(masks), test))  # [M, 2]
    assert acc.shape == (len(names), 2)
    n = int(np.asarray(test["mask"]).sum())
    ev = jax.jit(make_evaluate(model))

    def correct(accuracy):  # examples right (the programs may round count / n differently)
        return round(float(accuracy) * n)

    def evaluate(p, s, batches):
        return correct(ev(p, s, batches)["eval/accuracy"])

    avg = jax.tree.map(lambda x: jnp.tensordot(fl.weights, x, axes=(0, 0)),
                       (fl.params, fl.model_state))  # fmt: skip
    avg_correct = evaluate(*avg, test)
    for k in range(2):
        own = jax.tree.map(lambda x, k=k: x[k], (fl.params, fl.model_state))
        assert correct(acc[names.index("prefix_0"), k]) == evaluate(*own, test)
        assert correct(acc[names.index("prefix_3"), k]) == avg_correct
    # In between, each leaf follows its layer: only layer 1 averaged is conv_0 with its norm_0
    # parameters and statistics from the average, everything else the client's.
    (avg_p, avg_s), (own_p, own_s) = avg, jax.tree.map(lambda x: x[1], (fl.params, fl.model_state))
    hand_p = {**own_p, "conv_0": avg_p["conv_0"], "norm_0": avg_p["norm_0"]}
    hand_s = {**own_s, "norm_0": avg_s["norm_0"]}
    assert correct(acc[names.index("only_1"), 1]) == evaluate(hand_p, hand_s, test)
    metrics = {"eval/accuracy": 0.5, "eval/client_accuracy": 0.75, "val/client_accuracy": 0.1}
    assert forks.averaging_penalty(metrics) == {"eval/averaging_penalty": 0.25}


def test_mix_models_takes_each_leaf_from_its_layer():
    paths = ["conv_0/kernel", "head/bias", "head/kernel", "norm_0/bias", "norm_0/mean"]
    owners = forks.leaf_layers(paths, ("conv_0", "head"))
    assert owners == (0, 1, 1, 0, 0)
    avg = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    client = {"a": jnp.ones(2), "b": jnp.ones(3)}
    mixed = forks.mix_models(avg, client, jnp.array([True, False]), (0, 1))
    assert mixed["a"].tolist() == [0, 0] and mixed["b"].tolist() == [1, 1, 1]


@pytest.mark.parametrize(
    "name, depth, leaf, layer",
    [
        ("resnet", 18, "stem_norm/scale", "stem"),
        ("resnet", 18, "stage1_block0/norm2/bias", "stage1_block0/conv2"),
        ("resnet", 18, "stage2_block0/shortcut_norm/mean", "stage2_block0/shortcut"),
        ("plain_mlp", 2, "norm_1/var", "fc_1"),
        ("vgg", 11, "norm_7/mean", "conv_7"),
    ],
)
def test_every_leaf_of_the_families_follows_its_layer(name, depth, leaf, layer):
    """Kernels and biases belong to their module, norm parameters and statistics to the layer they
    normalize, in every registered family (a leaf that fits no layer raises)."""
    cfg = model_config(name=name, depth=depth, norm="batch", width=4, width_mult=0.125)
    holder = {}

    def init(key):  # shapes only: nothing is initialized
        holder["model"], params, state = build_model(cfg, (32, 32, 3), 10, key)
        return params, state

    params, state = jax.eval_shape(init, jax.random.key(0))
    model = holder["model"]
    found = {}
    for tree in (params, state):
        paths = forks.leaf_paths(tree)
        found.update(zip(paths, forks.leaf_layers(paths, model.layers), strict=True))
    for path, owner in found.items():
        if path.endswith(("/kernel", "/bias")) and "norm" not in path:
            assert model.layers[owner] == path.rsplit("/", 1)[0], path
    assert model.layers[found[leaf]] == layer
    with pytest.raises(ValueError, match="'extra/kernel' belongs to none"):
        forks.leaf_layers(["extra/kernel"], model.layers)


# -- end to end: a run with forks and the penalty against a run without ---------------------------
def _config(**fl):
    c = default_config()
    c.model.depth, c.model.width = 2, 4
    c.fl.num_clients, c.fl.local_steps, c.fl.batch_size = NUM_CLIENTS, STEPS, BATCH
    c.num_rounds = 2
    c.data.validation_fraction = 0.1
    c.checkpoint.every_rounds = 0
    c.log.tensorboard = "off"
    for k, v in fl.items():
        c.fl[k] = v
    return c


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").open()]


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    """A run with forks at rounds 1 and 2 (fork_last) and the penalty, whose fork and client
    evaluation programs may trace only once; its rows."""
    workdir = tmp_path_factory.mktemp("forks") / "forks"
    make_fork, make_clients = experiment.make_fork, experiment.make_client_evaluation
    mp = pytest.MonkeyPatch()
    mp.setattr(experiment, "make_fork",
               lambda *a, **k: chex.assert_max_traces(make_fork(*a, **k), n=1))  # fmt: skip
    mp.setattr(experiment, "make_client_evaluation",
               lambda *a, **k: chex.assert_max_traces(make_clients(*a, **k), n=1))  # fmt: skip
    try:
        train.run(_config(fork_rounds=(1,), fork_last=True, averaging_penalty=True), workdir,
                  progress=False)  # fmt: skip
    finally:
        mp.undo()
    return _rows(workdir)


def test_the_run_logs_the_penalty_and_mixes_that_agree_with_it(forked):
    assert [row["round"] for row in forked] == [1, 2]
    for row in forked:
        for split in ("eval", "val"):
            penalty = row[f"{split}/client_accuracy"] - row[f"{split}/accuracy"]
            assert row[f"{split}/averaging_penalty"] == pytest.approx(penalty, abs=1e-6)
        # Nothing averaged is the clients' mean accuracy; everything averaged is the average's.
        assert row["fork/mix/prefix_0/accuracy"] == pytest.approx(row["eval/client_accuracy"],
                                                                  abs=1e-6)  # fmt: skip
        assert row["fork/mix/prefix_3/accuracy"] == pytest.approx(row["eval/accuracy"], abs=1e-6)
        assert 0 < row["fork/conv_0/null_update"] <= 1
        assert row["fork/mean/update_ratio"] == pytest.approx(
            row["fork/mean/fl_update"] / row["fork/mean/null_update"], rel=1e-6
        )


@pytest.mark.slow
def test_forks_and_the_penalty_leave_the_trajectory_bit_for_bit(forked, tmp_path):
    """The same run without forks and the penalty writes every metric the same, bit for bit
    (slow: a second run; its fast sibling compares the round with and without its clients)."""
    train.run(_config(), tmp_path / "plain", progress=False)
    plain = _rows(tmp_path / "plain")
    assert len(forked) == len(plain) == 2
    for a, b in zip(forked, plain, strict=True):
        for key, value in b.items():
            if key != "time/round_seconds":
                assert a[key] == value, key
        extra = set(a) - set(b)
        assert {"eval/client_accuracy", "val/averaging_penalty", "fork/conv_0/update_ratio",
                "fork/mean/relative_ratio", "fork/mix/suffix_2/accuracy"} <= extra  # fmt: skip


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"fl.fork_rounds": (1, 3)}, "fl.fork_rounds"),
        ({"fl.fork_last": True, "mode": "centralized"}, "fl.fork_last"),
        ({"fl.averaging_penalty": True, "mode": "independent"}, "fl.averaging_penalty"),
        ({"fl.fork_rounds": (1,), "fl.bn_stats": "local"}, "fl.bn_stats"),
        ({"fl.fork_rounds": (0,)}, "fl.fork_rounds"),
    ],
)
def test_bad_fork_settings_are_one_line_naming_the_field(fields, field):
    c = _config()
    for name, value in fields.items():
        group, leaf = name.split(".") if "." in name else (None, name)
        (c[group] if group else c)[leaf] = value
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert e.value.field == field and "\n" not in str(e.value)


def test_the_cli_refuses_a_late_fork_with_exit_2_and_writes_nothing(tmp_path, capsys):
    tiny = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")
    workdir = tmp_path / "w"
    code = cli.main(["train", "--config", tiny, "--workdir", str(workdir),
                     "--config.num_rounds=2", "--config.fl.fork_rounds=(1, 5)"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and not workdir.exists()
    assert err.count("\n") == 0 and "fl.fork_rounds" in err and "num_rounds=2" in err, err
