"""The simulation state: what persists per client, cohort sampling, gather and scatter."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from conftest import model_config
from fedjax_deep.fl import (
    algorithms,
    gather_cohort,
    init_sim_state,
    injected_hparams,
    sample_cohort,
    scatter_cohort,
)
from fedjax_deep.models import build_model


def _model(norm="batch"):
    return build_model(model_config(depth=2, width=4, norm=norm), (8, 8, 1), 10, jax.random.key(0))


def test_sample_cohort_is_uniform_without_replacement_over_clients_with_data():
    num_examples = jnp.array([5, 0, 3, 7, 0, 2, 9, 4], jnp.int32)
    counts = np.zeros(8)
    for i in range(400):
        ids = np.asarray(sample_cohort(jax.random.key(i), num_examples, 3))
        assert len(set(ids.tolist())) == 3 and not {1, 4} & set(ids.tolist())
        counts[ids] += 1
    held = counts[[0, 2, 3, 5, 6, 7]] / 400
    assert np.all(np.abs(held - 0.5) < 0.1)  # each of 6 data-holding clients: 3/6 of rounds


def test_only_what_persists_is_held_for_the_population():
    _, params, state = _model()
    assert init_sim_state(params, state, algorithms.fedavg()).clients == {}
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)
    sim = init_sim_state(params, state, algorithms.scaffold(0.1, 5), client_optimizer=opt,
                         num_clients=5, independent=True,
                         client_hparams=injected_hparams(opt, params))  # fmt: skip
    assert set(sim.clients) == {"opt_state", "params", "algorithm"}
    assert {x.shape[0] for x in jax.tree.leaves(sim.clients)} == {5}
    assert set(sim.client_hparams) == {"learning_rate", "momentum"}
    # FedBN declares that its clients keep their BatchNorm statistics; a model without any has none.
    fedbn = algorithms.fedbn(state)
    assert set(init_sim_state(params, state, fedbn, num_clients=3).clients) == {
        "model_state", "algorithm"}  # fmt: skip
    _, params, state = _model("group")
    assert init_sim_state(params, state, algorithms.fedavg(), num_clients=3,
                          local_model_state=True).clients == {}  # fmt: skip


def test_scatter_writes_back_only_the_cohorts_rows():
    _, params, state = _model()
    sim = init_sim_state(params, state, algorithms.scaffold(0.1, 6), num_clients=6)
    sim = sim.replace(clients=jax.tree.map(lambda a: a + jnp.arange(6.0).reshape(
        (6,) + (1,) * (a.ndim - 1)), sim.clients))  # fmt: skip
    ids = jnp.array([4, 1], jnp.int32)
    cohort = gather_cohort(sim, ids)
    leaf = jax.tree.leaves(cohort.clients)[0]
    assert leaf.shape[0] == 2 and float(leaf[0].ravel()[0]) == 4.0
    trained = cohort.replace(clients=jax.tree.map(lambda a: a * 0 - 1, cohort.clients))
    back = scatter_cohort(sim, trained, ids)
    for before, after in zip(jax.tree.leaves(sim.clients), jax.tree.leaves(back.clients),
                             strict=True):  # fmt: skip
        np.testing.assert_array_equal(after[np.array([0, 2, 3, 5])], before[np.array([0, 2, 3, 5])])
        np.testing.assert_array_equal(after[np.array([1, 4])], -1)
