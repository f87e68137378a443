"""``prepare(config)`` then ``build(config, prepared)``: an experiment, typed and ready to train.

:func:`prepare` does everything that can fail on bad input and writes nothing: it loads the data,
draws the partition, checks the model against the input shape, and estimates the memory one client
needs against the memory available (:func:`estimate_memory`). :func:`build` then makes the model,
the stacked state, the jitted-to-be round and the evaluation, and returns an :class:`Experiment`.
Neither touches the run directory (:mod:`fedjax_deep.runlog` does).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.extend import core as jax_core

from fedjax_deep import accounting
from fedjax_deep.config import FIELDS, config_errors
from fedjax_deep.data import (
    Dataset,
    make_augment,
    make_partition,
    num_local_steps,
    partition_stats,
    split_validation,
    stack_clients,
)
from fedjax_deep.data import sources as data_sources
from fedjax_deep.errors import ConfigError
from fedjax_deep.fl import algorithms, privacy
from fedjax_deep.fl.algorithms import Algorithm
from fedjax_deep.fl.client import ClientState, make_client_update
from fedjax_deep.fl.execution import (
    Execution,
    available_memory_bytes,
    choose_execution,
    estimate_bytes_per_client,
    pad_clients,
    place_round_inputs,
    replicate,
    shard_clients,
)
from fedjax_deep.fl.forks import make_client_evaluation, make_fork
from fedjax_deep.fl.heterogeneity import Heterogeneity
from fedjax_deep.fl.round import make_round
from fedjax_deep.fl.state import SimState, init_sim_state, injected_hparams, sample_cohort
from fedjax_deep.losses import get_loss
from fedjax_deep.metrics import batch_eval_data, make_evaluate
from fedjax_deep.models import build_model, check_model_config, check_outputs
from fedjax_deep.optimizers import make_client_optimizer, make_server_optimizer


def make_algorithm(config, model_state) -> Algorithm:
    """``config.algorithm`` as an :class:`~fedjax_deep.fl.algorithms.Algorithm`, built by its
    registry entry (``model_state`` may be shapes: it names the BatchNorm modules)."""
    setting = algorithms.Setting(
        server_optimizer=make_server_optimizer(config.server_opt),
        num_clients=config.fl.num_clients,
        client_learning_rate=config.client_opt.learning_rate,
        client_momentum=config.client_opt.momentum,
        model_state=model_state,
        variate_weights=config.algorithm.variate_weights,
    )
    return algorithms.REGISTRY[config.algorithm.name].build(config.algorithm, setting)


def describe_algorithm(config) -> dict:
    """What ``run_info.json`` records of the algorithm (the fields of ``config.algorithm`` it
    takes) and its server optimizer."""
    a, s = config.algorithm, config.server_opt
    out = {"name": a.name, "server_opt": s.name, "server_lr": s.learning_rate}
    if s.name in ("adam", "yogi", "adagrad"):
        out["server_opt_variant"] = s.variant
    out.update({name: a[name] for name in algorithms.REGISTRY[a.name].hparams})
    return out


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` found: the data and its split, and the per-round shapes.

    Attributes:
      partition: one index array per learner (one for centralized training).
      fl_partition: the federated partition (drawn in every mode: CL sees the same examples per
        round as the FL run it is compared with).
      batch_size, num_steps: ``B`` and ``S`` of every learner's local training in a round.
      memory: :func:`estimate_memory`'s figures in bytes.
    """

    dataset: Dataset
    partition: list[np.ndarray]
    fl_partition: list[np.ndarray]
    batch_size: int
    num_steps: int
    memory: dict[str, int]


@dataclasses.dataclass
class Experiment:
    """One experiment, built and ready to train (several may train together on a seed axis).

    Attributes:
      state: the round's state before round 1 (placed for ``execution``).
      round_fn: ``(state, client_data, key) -> (state, metrics)``, pure, to jit once.
      round_inputs: ``r -> (client_data, key)`` for round ``r`` (0-based).
      evaluate_fn: ``(state, eval_batches) -> metrics``, pure.
      run_key: the key every round's key is folded from.
      run_info: what ``run_info.json`` records.
      leaf_names: parameter paths in leaf order (names the layer the numeric guard caught).
      partition_stats: client sizes and class histograms (None for centralized runs).
      evaluate_clients_fn: ``(client_models, eval_batches) -> <split>/client_accuracy`` with
        ``fl.averaging_penalty`` (the round then also returns its client models), else None.
      fork_fn: ``(start, client_models, fork_data, round_key, test_batches) -> fork/...`` with
        forks (``fl.fork_rounds``, ``fl.fork_last``), else None; ``fork_data`` the whole
        training set on the device, ``fork_rounds`` the 1-based rounds that fork.
      privacy: the run's :class:`~fedjax_deep.accounting.Plan` (DP-FedAvg or Poisson cohorts;
        None otherwise): the loop's accountant.
    """

    config: ml_collections.ConfigDict
    state: SimState
    round_fn: Callable
    round_inputs: Callable[[int], tuple[Any, jax.Array]]
    evaluate_fn: Callable
    eval_batches: Any
    run_key: jax.Array
    run_info: dict
    leaf_names: list[str]
    partition_stats: dict | None
    build_seconds: float
    mesh: Any
    on_host: bool
    evaluate_clients_fn: Callable | None = None
    fork_fn: Callable | None = None
    fork_data: Any = None
    fork_rounds: frozenset = frozenset()
    privacy: accounting.Plan | None = None


def prepare(config: ml_collections.ConfigDict, cache: dict | None = None) -> Prepared:
    """Everything that can fail on bad input, done before the run directory is touched.

    ``cache`` lets the points of a sweep share a loaded dataset. Raises ``ConfigError`` or
    ``DataError``.
    """
    rng = np.random.default_rng(config.seed)
    data_key = (config.data.to_json(), config.seed)
    with config_errors():
        if cache is not None and data_key in cache:
            # The generator resumes where loading left it, as if the data had been loaded anew.
            dataset, state_after_load = cache[data_key]
            rng.bit_generator.state = state_after_load
        else:
            dataset = data_sources.load(config.data.name, config.data, rng)
            if cache is not None:
                cache[data_key] = (dataset, rng.bit_generator.state)
        if config.data.validation_fraction:
            # Its own generator: the draws that follow (the partition) keep their stream.
            val_key = ("validation", data_key)
            if cache is not None and val_key in cache:
                dataset = cache[val_key]
            else:
                dataset = split_validation(
                    dataset, config.data.validation_fraction,
                    np.random.default_rng([config.seed, 0x7A1]),
                )  # fmt: skip
                if cache is not None:
                    cache[val_key] = dataset
        check_model_config(config.model, dataset.input_shape)
        _cka_probe(config, dataset)  # a probe larger than the test set fails here, not mid-run
        fl_partition = make_partition(config.data, dataset.strata, config.fl.num_clients, rng,
                                      dataset.train_clients)  # fmt: skip
    partition, batch_size, num_steps = learners_and_steps(config, fl_partition)
    memory = estimate_memory(config, dataset, len(partition), batch_size, num_steps)
    return Prepared(dataset, partition, fl_partition, batch_size, num_steps, memory)


def learners_and_steps(config, fl_partition) -> tuple[list[np.ndarray], int, int]:
    """What each learner holds, the batch size and the local steps a round, from the federated
    partition: the clients themselves, or for ``mode=centralized`` one learner holding their union
    (the whole training set unless clients sample it, as partition iid_sampled does) and as many
    steps as give it the examples a federated round sees. The runner's own count; cost estimates
    (the study's ``paper_cost.py``) call it too."""
    if config.mode == "centralized":
        partition = [np.unique(np.concatenate(fl_partition))]
    else:
        partition = fl_partition
    max_examples = max(len(p) for p in partition)
    batch_size = min(config.fl.batch_size, max_examples)
    if config.mode == "centralized":
        num_steps = _centralized_steps(config, fl_partition, batch_size)
    else:
        num_steps = num_local_steps(
            max_examples, batch_size, config.fl.local_epochs, config.fl.local_steps
        )
    return partition, batch_size, num_steps


def _centralized_steps(config, fl_partition, batch_size: int) -> int:
    """Local steps per round that give one learner the examples a federated round sees."""
    cohort = config.fl.cohort_size or config.fl.num_clients
    if config.fl.local_steps > 0:
        fl_batch = min(config.fl.batch_size, max(len(p) for p in fl_partition))
        examples = config.fl.local_steps * fl_batch * cohort
    else:
        sizes = [len(p) for p in fl_partition]
        examples = config.fl.local_epochs * sum(sizes) * cohort / len(sizes)
    return max(1, round(examples / batch_size))


def _traced_bytes(jaxpr) -> int:
    """Bytes of every value a jaxpr (and its sub-jaxprs) computes: an upper bound of what a
    backward pass keeps."""
    total = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = getattr(var, "aval", None)
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                total += int(np.prod(aval.shape, dtype=np.int64)) * aval.dtype.itemsize
        for sub in jax_core.jaxprs_in_params(eqn.params):
            total += _traced_bytes(sub)
    return total


def estimate_memory(config, dataset: Dataset, num_learners: int, batch_size: int, num_steps: int):
    """Bytes one client's local training needs (params, gradients, optimizer and update buffers,
    activations of one batch, the round's batch indices), plus the run's fixed costs (server state,
    per-client state that persists, data on the device), from shapes alone (``jax.eval_shape`` and a
    traced forward pass: nothing is allocated).

    Raises ``ConfigError`` naming the largest term's field when the total exceeds the memory
    available (host RAM on CPU, free device memory on an accelerator).
    """
    holder = {}

    def init(key):
        model, params, model_state = build_model(
            config.model, dataset.input_shape, dataset.num_classes, key
        )
        holder["model"] = model  # the static graph definition; no arrays leave the trace
        return params, model_state

    with config_errors():
        params, model_state = jax.eval_shape(init, jax.random.key(0))
        check_outputs(holder["model"], params, model_state, dataset.input_shape,
                      dataset.num_classes, config.loss.name, dataset.train_x.dtype,
                      config.model.name, dataset.train_y)  # fmt: skip
    model = holder["model"]
    x = jax.ShapeDtypeStruct((1, *dataset.input_shape), dataset.train_x.dtype)
    forward = jax.make_jaxpr(lambda p, s, x: model.apply(p, s, x, train=True)[0])
    activations = _traced_bytes(forward(params, model_state, x).jaxpr) * 2  # forward + backward
    param_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in jax.tree.leaves(params))
    persistent = 0
    if config.mode == "independent":
        persistent = num_learners * param_bytes * 2  # each run's model and momentum
    elif config.mode == "centralized":
        persistent = param_bytes
    # What the algorithm keeps per client (SCAFFOLD's c_i, FedDyn's h_i, FedBN's norm layers).
    persistent += num_learners * make_algorithm(config, model_state).persistent_bytes(params)
    terms = {
        "model": param_bytes * 5,  # params, gradients, momentum, update, the round's start point
        "activations": batch_size * activations,
        "steps": num_learners * num_steps * batch_size * 5,  # int32 indices + bool masks
        "population": persistent,
        "data": dataset.train_x.nbytes
        + dataset.test_x.nbytes
        + (dataset.val_x.nbytes if dataset.val_x is not None else 0),
    }
    need = sum(terms.values()) + param_bytes * 3  # the server's params, update and optimizer
    free = available_memory_bytes()
    if free is not None and need > free:
        largest = max(terms, key=terms.get)
        width = (("model.width_mult", config.model.width_mult)
                 if config.model.name in ("vgg", "resnet")
                 else ("model.width", config.model.width))  # fmt: skip
        # Activations grow with the batch and the width: name the one further above its default.
        growth = {f: v / FIELDS[f].default for f, v in (width, ("fl.batch_size", batch_size))}
        field, value = {
            "model": width,
            "activations": width if growth[width[0]] > growth["fl.batch_size"]
            else ("fl.batch_size", config.fl.batch_size),
            "steps": ("fl.local_steps" if config.fl.local_steps else "fl.local_epochs",
                      config.fl.local_steps or config.fl.local_epochs),
            "population": ("fl.num_clients", config.fl.num_clients),
            "data": ("data.placement", config.data.placement),
        }[largest]  # fmt: skip
        raise ConfigError(
            field,
            value,
            f"the run needs about {need / 2**30:.1f} GiB ({largest}: "
            f"{terms[largest] / 2**30:.1f} GiB), more than the {free / 2**30:.1f} GiB available; "
            "make it smaller (the model's size fields, fl.batch_size, local steps or clients)",
        )
    return {**terms, "total": need, "available": free or 0}


def _cka_probe(config, dataset) -> np.ndarray | None:
    """``fl.cka_probe``: the first N test examples, the fixed batch on which client models'
    representations are compared (None when off, or without a client axis to compare over)."""
    n = config.fl.cka_probe
    if not n or config.mode == "centralized" or not config.fl.divergence:
        return None
    if not 2 <= n <= len(dataset.test_y):
        raise ConfigError(
            "fl.cka_probe",
            n,
            f"must be 0 (off) or between 2 and the {len(dataset.test_y)} test examples",
        )
    return np.asarray(dataset.test_x[:n])


def heterogeneity(config) -> Heterogeneity:
    """``config.fl``'s unequal local work (step budgets, dropouts, stragglers)."""
    fl = config.fl
    return Heterogeneity(
        step_budgets=tuple(fl.step_budgets),
        budget_dist=fl.budget_dist,
        budget_min_fraction=fl.budget_min_fraction,
        dropout_rate=fl.dropout_rate,
        straggler_rate=fl.straggler_rate,
        straggler_fraction=fl.straggler_fraction,
    )


def _data_on_host(config, dataset, partition) -> bool:
    """``data.placement``: ``auto`` keeps client data on the device when it takes less than half
    of the device's free memory."""
    if config.data.placement != "auto":
        return config.data.placement == "host"
    bytes_needed = sum(len(p) for p in partition) * dataset.train_x[0].nbytes
    free = available_memory_bytes()
    return free is not None and bytes_needed > 0.5 * free


def _choose_execution(
    config, model, client_opt, client_data, params, model_state, batch_size, num_steps, cohort_size
):
    """The run's client-axis strategy (``config.fl.execution``) and why it was chosen."""
    if config.mode == "centralized":
        return Execution(), "centralized: one learner, no client axis to split"
    bytes_per_client = None
    if config.fl.execution == "auto" and jax.default_backend() != "cpu":
        # Measure one client's local training (arguments + temporaries) with XLA's analysis.
        client_update = make_client_update(model, client_opt, loss_fn=get_loss(config.loss.name))
        one = ClientState(params, model_state, client_opt.init(params))
        steps = {
            "idx": jnp.zeros((num_steps, batch_size), jnp.int32),
            "mask": jnp.ones((num_steps, batch_size), bool),
        }
        data = {"x": client_data.x[0], "y": client_data.y[0]}
        bytes_per_client = estimate_bytes_per_client(
            client_update, one, steps, jax.random.key(0), data
        )
    return choose_execution(
        config.fl.execution,
        cohort_size or client_data.num_clients,  # a Poisson cohort's slots
        chunk_size=config.fl.chunk_size,
        bytes_per_client=bytes_per_client,
    )


def build(
    config: ml_collections.ConfigDict, prepared: Prepared, device_cache: dict | None = None
) -> Experiment:
    """The model, the stacked state, the round and the evaluation of one experiment.

    ``device_cache`` lets experiments with the same data and partition (the members of a sweep
    that differ in learning rate, say) share one copy of their client and test data on the device:
    :func:`fedjax_deep.train.train` then passes it to their shared program once."""
    dataset, partition = prepared.dataset, prepared.partition
    batch_size, num_steps = prepared.batch_size, prepared.num_steps
    start = time.time()
    model_key, run_key = jax.random.split(jax.random.key(config.seed))
    with config_errors():
        model, params, model_state = build_model(
            config.model, dataset.input_shape, dataset.num_classes, model_key
        )
    if config.precision == "bf16":
        model = model.with_compute_dtype(jnp.bfloat16)
    centralized = config.mode == "centralized"
    independent = config.mode == "independent"
    on_host = _data_on_host(config, dataset, partition)
    cache = device_cache if device_cache is not None else {}
    data_key = (
        id(dataset),
        on_host,
        b"".join(np.asarray(p, np.int64).tobytes() + b"|" for p in partition),
    )
    if data_key not in cache:
        cache[data_key] = stack_clients(
            dataset.train_x, dataset.train_y, partition, on_device=not on_host
        )
    client_data = cache[data_key]
    cohort_size = 0 if centralized else config.fl.cohort_size
    if cohort_size == client_data.num_clients:
        cohort_size = 0
    client_opt = make_client_optimizer(config.client_opt)
    algorithm = make_algorithm(config, model_state)
    plan, poisson_rate = None, 0.0
    if not centralized:
        plan = accounting.plan(config, sum(len(p) > 0 for p in partition))
    if plan is not None and plan.sampling.kind == "poisson":
        cohort_size, poisson_rate = plan.sampling.cap, plan.sampling.rate
    if config.privacy.clip_norm > 0:
        algorithm = _private(config, algorithm, plan)
    execution, why = _choose_execution(
        config, model, client_opt, client_data, params, model_state, batch_size, num_steps,
        cohort_size,
    )  # fmt: skip
    mesh = execution.mesh
    if mesh is not None and poisson_rate:  # more slots only make an overflow rarer
        cohort_size = -(-cohort_size // execution.num_shards) * execution.num_shards
    if mesh is not None and cohort_size % execution.num_shards:
        raise ConfigError(
            "fl.cohort_size",
            cohort_size,
            f"must be a multiple of the {execution.num_shards} devices the clients are sharded over",
        )
    fork_rounds = frozenset(config.fl.fork_rounds) | (
        {config.num_rounds} if config.fl.fork_last else set()
    )
    population = client_data
    if mesh is not None:
        population = pad_clients(population, execution.num_shards, on_device=not on_host)
    unequal_work = heterogeneity(config)
    # Independent runs (E7's null reference) are never averaged: each keeps its model, optimizer
    # state and BatchNorm statistics; there is no shared point for a gradient divergence.
    round_fn = make_round(
        model,
        client_opt,
        algorithm,
        batch_size=batch_size,
        num_local_steps=num_steps,
        divergence=config.fl.divergence and not centralized,
        grad_divergence=config.fl.grad_divergence and not independent,
        execution=execution,
        augment=make_augment(config.data.augment),
        cohort_size=cohort_size,
        poisson_rate=poisson_rate,
        # On the host the cohort is drawn (with the same key) and copied over before the round.
        draw_cohort=not on_host,
        skip_nonfinite=config.fl.nonfinite == "skip",
        cka_probe=_cka_probe(config, dataset),
        return_clients=config.fl.averaging_penalty or bool(fork_rounds),
        heterogeneity=unequal_work,
        loss_fn=get_loss(config.loss.name),
    )
    state = init_sim_state(
        params,
        model_state,
        algorithm,  # FedBN keeps each client's BatchNorm statistics (Algorithm.local_model_state)
        client_optimizer=client_opt if (centralized or independent) else None,
        num_clients=population.num_clients,
        local_model_state=config.fl.bn_stats == "local" or independent,
        independent=independent,
        client_hparams=injected_hparams(client_opt, params),
    )
    state, device_data = place_round_inputs(execution, state, None if on_host else population)

    def round_inputs(r):
        """This round's client data and key (a host-side cohort is drawn and copied here)."""
        key = jax.random.fold_in(run_key, r)
        data = device_data
        if on_host:
            ids = np.arange(population.num_clients)
            taking_part = None
            if cohort_size:
                key, cohort_key = jax.random.split(key)
                n = jnp.asarray(population.num_examples)
                if poisson_rate:  # the round's own draw (its overflow is not logged here)
                    ids, taking_part, _ = privacy.sample_poisson_cohort(
                        cohort_key, n, poisson_rate, cohort_size
                    )
                    ids, taking_part = np.asarray(ids), np.asarray(taking_part)
                else:
                    ids = np.asarray(sample_cohort(cohort_key, n, cohort_size))
            data = jax.tree.map(lambda a: jnp.asarray(a[ids]), population)
            if taking_part is not None:
                data = data.replace(num_examples=jnp.where(taking_part, data.num_examples, 0))
            if mesh is not None:
                data = shard_clients(pad_clients(data, execution.num_shards), mesh)
        return data, key if mesh is None else replicate(key, mesh)

    eval_key = ("eval", id(dataset), config.eval.batch_size)
    if eval_key not in cache:
        # The test split as 'eval/...', and the validation split, when there is one, as 'val/...'.
        cache[eval_key] = {"eval": batch_eval_data(dataset.test_x, dataset.test_y,
                                                   config.eval.batch_size)}  # fmt: skip
        if dataset.val_x is not None:
            cache[eval_key]["val"] = batch_eval_data(
                dataset.val_x, dataset.val_y, config.eval.batch_size
            )
    eval_batches = cache[eval_key]
    if mesh is not None:
        eval_batches = replicate(eval_batches, mesh)
    evaluate_fn = _make_evaluate_fn(model, independent, get_loss(config.loss.name))
    round_fn = with_precision(round_fn, config.precision)
    evaluate_fn = with_precision(evaluate_fn, config.precision)
    evaluate_clients_fn = fork_fn = fork_data = None
    if config.fl.averaging_penalty:
        evaluate_clients_fn = with_precision(
            make_client_evaluation(model, execution.chunk_size), config.precision
        )
    if fork_rounds:
        fork_fn = with_precision(make_fork(
            model, client_opt, params, model_state, batch_size=batch_size,
            num_local_steps=num_steps, augment=make_augment(config.data.augment),
            chunk_size=execution.chunk_size, cka_probe=_cka_probe(config, dataset),
            mix_clients=min(config.fl.fork_mix_clients, cohort_size or population.num_clients),
        ), config.precision)  # fmt: skip
        fork_key = ("fork", id(dataset))
        if fork_key not in cache:
            # The null clients' data: the whole training set, once (never copied per client).
            cache[fork_key] = {"x": jnp.asarray(dataset.train_x), "y": jnp.asarray(dataset.train_y)}
        fork_data = cache[fork_key] if mesh is None else replicate(cache[fork_key], mesh)
    run_info = {
        "dataset": dataset.name,
        "input_shape": list(dataset.input_shape),
        "num_train": int(len(dataset.train_y)),
        "num_test": int(len(dataset.test_y)),
        "num_validation": 0 if dataset.val_y is None else int(len(dataset.val_y)),
        "num_clients": len(partition),
        "client_sizes": [int(len(p)) for p in partition],
        "batch_size": int(batch_size),
        "num_local_steps": int(num_steps),
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "layers": list(model.layers),
        "receptive_field": model.receptive_field,
        "backend": jax.default_backend(),
        "devices": len(jax.devices()),
        "processes": jax.process_count(),
        "execution": why,
        "data_placement": "host (cohort copied per round)" if on_host else "device",
        "cohort_size": cohort_size or len(partition),
        "partition": config.data.partition,
        "algorithm": describe_algorithm(config),
        "precision": config.precision,
        "memory_estimate_bytes": prepared.memory,
        "privacy": None if plan is None else plan.describe(),
    }
    if unequal_work.active:
        run_info["heterogeneity"] = dataclasses.asdict(unequal_work)
    leaf_names = [
        "/".join(str(getattr(k, "key", k)) for k in path)
        for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]
    ]
    stats = None
    if not centralized:
        stats = partition_stats(partition, dataset.strata, dataset.num_classes)
    return Experiment(
        config, state, round_fn, round_inputs, evaluate_fn, eval_batches, run_key, run_info,
        leaf_names, stats, time.time() - start, mesh, on_host,
        evaluate_clients_fn, fork_fn, fork_data, fork_rounds, plan,
    )  # fmt: skip


def _private(config, algorithm: Algorithm, plan: accounting.Plan) -> Algorithm:
    """``algorithm`` with DP-FedAvg's clipped, noised aggregation (``config.privacy``)."""
    p = config.privacy
    count_noise = p.adaptive_count_noise or plan.sampling.expected / 20
    if p.adaptive_quantile and plan.calibrated and plan.noise_multiplier >= 2 * count_noise:
        raise ConfigError(
            "privacy.target_epsilon",
            p.target_epsilon,
            f"needs z = {plan.noise_multiplier:.4g}, but adaptive clipping needs z < 2 * count "
            f"noise = {2 * count_noise:g}; raise privacy.adaptive_count_noise",
        )
    return privacy.private(
        algorithm,
        noise_multiplier=plan.noise_multiplier,
        clip_norm=p.clip_norm,
        expected_cohort=plan.sampling.expected,
        per_layer=p.clip == "per_layer",
        adaptive_quantile=p.adaptive_quantile,
        adaptive_lr=p.adaptive_lr,
        adaptive_count_stddev=count_noise,
    )


def with_precision(fn: Callable, precision: str) -> Callable:
    """``fn`` traced under ``config.precision``'s float32 matmul precision: ``highest`` pins exact
    float32 products (``jax.default_matmul_precision``, read when ``fn`` is traced, so it holds
    wherever ``fn`` is jitted, vmapped or mapped); ``default`` and ``bf16`` leave the backend's."""
    if precision != "highest":
        return fn

    def traced_at_highest(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return traced_at_highest


def _make_evaluate_fn(model, independent: bool, loss_fn=None):
    """``(state, {'eval': test batches, 'val': validation batches}) -> metrics``: each split's
    metrics under its prefix (``eval/accuracy``, ``val/accuracy``: every metric of the loss)."""
    evaluate_split = _make_evaluate_split(model, independent, loss_fn)

    def evaluate_fn(s, splits):
        out = {}
        for prefix, batches in splits.items():
            metrics = evaluate_split(s, batches)
            out.update({f"{prefix}/{k.split('/', 1)[1]}": v for k, v in metrics.items()})
        return out

    return evaluate_fn


def _make_evaluate_split(model, independent: bool, loss_fn=None):
    """The global model's metrics on one split; independent runs are each evaluated with their own
    statistics and the row reports their mean and spread (of accuracy, when the loss reports it)."""
    evaluate_one = make_evaluate(model, loss_fn)
    if not independent:

        def evaluate_fn(s, batches):
            return evaluate_one(s.params, s.model_state, batches)

        return evaluate_fn

    def evaluate_fn(s, batches):
        stats = s.clients.get("model_state", s.model_state)
        axes = 0 if "model_state" in s.clients else None
        per_run = jax.vmap(evaluate_one, in_axes=(0, axes, None))(
            s.clients["params"], stats, batches
        )
        out = {k: jnp.mean(v) for k, v in per_run.items()}
        if "eval/accuracy" in per_run:
            out["eval/accuracy_std_over_runs"] = jnp.std(per_run["eval/accuracy"])
        return out

    return evaluate_fn
