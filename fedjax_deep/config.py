"""Experiment configs: the table of fields, loading ``get_config()`` files, overrides, validation.

Every field a config may hold is a row of :data:`FIELDS`: its default, its type and its allowed
choices or range, and what it means. :func:`default_config` is built from that table and
:func:`validate` checks a config against it (plus a few rules that tie fields together), so a
field, its default and its check live in one place. A field that does not exist, a value of the
wrong type or out of range is a :class:`~fedjax_deep.errors.ConfigError`, raised before any data is
loaded or any file is written; the command line turns it into one line on stderr and exit code 2.

Choices that name library pieces (datasets, partitions, models, algorithms, optimizers, execution
strategies) are read from the libraries' own tables when a config is validated (:class:`Table`),
so importing this module imports neither JAX nor Flax nor the round, and a table a user adds to
before validating is the one checked.

Library code (models, data) raises :class:`~fedjax_deep.errors.FieldError` and never imports this
module; :func:`config_errors` turns it into ``ConfigError`` where the runner calls the libraries.
Sweeps (``config.sweep``) are expanded by :mod:`fedjax_deep.sweep`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import math
import pathlib
import sys
from typing import Any

import ml_collections

from fedjax_deep.errors import ConfigError, FieldError

MODES = ("fl", "centralized", "independent")
# Sizes beyond these are typos or would exhaust any machine before the memory estimate could help.
MAX_WIDTH = 65536
MAX_STEPS = 10**6


@dataclasses.dataclass(frozen=True)
class Table:
    """The choices of a field, read from a library's table (its keys, in order, or sorted) when a
    config is validated: ``Table('fedjax_deep.models', 'MODELS')``."""

    module: str
    name: str
    sort: bool = False

    def __call__(self) -> tuple:
        table = getattr(importlib.import_module(self.module), self.name)
        return tuple(sorted(table)) if self.sort else tuple(table)


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: its default and what values it accepts.

    ``low``/``high`` bound numbers (inclusive; ``open_low`` excludes ``low``); ``choices`` lists the
    allowed strings (a tuple, or a :class:`Table` read at validation); ``items`` bounds the integers
    of a tuple field; ``doc`` says what it means.
    """

    default: Any
    doc: str = ""
    choices: tuple | Table = ()
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    items: tuple[int, int] | None = None

    def check(self, name: str, value: Any) -> None:
        """Raises :class:`ConfigError` unless ``value`` has the default's type and fits."""
        default = self.default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(name, value, "expected true or false")
        elif isinstance(default, int):
            if not _is_int(value):
                raise ConfigError(name, value, "expected an integer")
        elif isinstance(default, float):
            if not _is_num(value) or not math.isfinite(value):
                raise ConfigError(name, value, "expected a finite number")
            # Runs compute in float32: a value outside its range would silently be 0 or inf.
            if value and not FLOAT32_TINY <= abs(value) <= FLOAT32_MAX:
                fix = (f"is {'0' if abs(value) < 1 else 'inf'} in float32, the precision runs "
                       f"compute in; use 0 or a magnitude in [{FLOAT32_TINY:.3g}, "
                       f"{FLOAT32_MAX:.3g}]")  # fmt: skip
                raise ConfigError(name, value, fix)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(name, value, "expected a string")
        elif isinstance(default, tuple) and self.items is not None:
            lo, hi = self.items
            if not isinstance(value, tuple | list) or not all(
                _is_int(x) and lo <= x <= hi for x in value
            ):
                raise ConfigError(name, value, f"expected a tuple of integers in [{lo}, {hi}]")
        choices = self.choices() if isinstance(self.choices, Table) else self.choices
        if choices and value not in choices:
            raise ConfigError(name, value, f"use one of {', '.join(map(str, choices))}")
        if self.low is not None or self.high is not None:
            lo = -math.inf if self.low is None else self.low
            hi = math.inf if self.high is None else self.high
            too_low = value <= lo if self.open_low else value < lo
            if too_low or value > hi:
                left = "(" if self.open_low else "["
                raise ConfigError(name, value, f"must be in {left}{_num(lo)}, {_num(hi)}]")


FLOAT32_TINY = 1.1754944e-38  # the smallest normal float32: below it, values flush to 0
FLOAT32_MAX = 3.4028235e38


def _num(x: float) -> str:
    return str(int(x)) if math.isfinite(x) and x == int(x) else f"{x:g}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


F = Field
FIELDS: dict[str, Field] = {
    "seed": F(0, "seeds the data split, partition, model init and every round's draws",
              low=0, high=2**32 - 1),
    "mode": F("fl", "'fl' (federated), 'centralized' (one learner on the union of the client "
              "data, the same examples per round) or 'independent' (fl.num_clients SGD runs from "
              "one init, never averaged: E7's null reference)", choices=MODES),
    "num_rounds": F(5, low=1, high=MAX_STEPS),
    "data.name": F("digits", choices=Table("fedjax_deep.data", "DATASETS", sort=True)),
    "data.test_fraction": F(0.2, "digits: share of examples held out for testing",
                            low=0.0, high=0.99, open_low=True),
    "data.validation_fraction": F(0.0, "share of each class's training examples held out as a "
                                  "validation split (val/accuracy each evaluation; tuning reads "
                                  "it, never the test split); 0: none", low=0.0, high=0.5),
    "data.partition": F("iid", "fedjax_deep.data.partition",
                        choices=Table("fedjax_deep.data", "PARTITIONS")),
    "data.dirichlet_alpha": F(0.5, "small: few classes per client; large: close to IID",
                              low=0.0, high=1e6, open_low=True),
    "data.classes_per_client": F(2, "for partition 'shards'", low=1, high=100_000),
    "data.client_examples": F(0, "for partition 'iid_sampled': distinct examples each client "
                              "draws from the whole training set, independently of the others "
                              "(0: training examples // fl.num_clients)", low=0, high=2**31 - 1),
    "data.data_dir": F("", "prepared tensorflow-datasets folders ('' = $TFDS_DATA_DIR or ~/...)"),
    "data.manual_dir": F("", "Tiny-ImageNet: the folder holding tiny-imagenet-200 ('' = data_dir)"),
    "data.augment": F("none", "image datasets only",
                      choices=Table("fedjax_deep.data", "AUGMENTATIONS")),
    "data.placement": F("auto", "client data on the 'device' once, or on the 'host' (cohort "
                        "copied per round); auto: host when it takes over half the free memory",
                        choices=("auto", "device", "host")),
    "data.tfds_name": F("", "data.name=tfds: any prepared tensorflow-datasets dataset, e.g. mnist"),
    "data.feature_key": F("image", "data.name=tfds: the feature holding the inputs"),
    "data.label_key": F("label", "data.name=tfds: the feature holding the integer labels"),
    "data.client_key": F("", "data.name=tfds: the feature naming each example's client (integer "
                         "or string) for data.partition=natural ('': none)"),
    "data.leaf_dir": F("", "data.name=leaf: the folder holding LEAF's train/*.json and "
                       "test/*.json (users, num_samples, user_data)"),
    "data.max_client_examples": F(0, "> 0: each client keeps at most this many examples (a seeded "
                                  "random subset), so the padded [C, N_max] client data fits",
                                  low=0, high=10**9),
    "model.name": F("plain_cnn", choices=Table("fedjax_deep.models", "MODELS", sort=True)),
    "model.depth": F(4, "layers of plain nets; vgg 11/13/16/19; resnet 18/34/50/101/152",
                     low=1, high=1024),
    "model.width": F(32, "channels of plain nets", low=1, high=MAX_WIDTH),
    "model.kernel_size": F(3, "odd", low=1, high=63),
    "model.norm": F("group", choices=Table("fedjax_deep.models", "NORMS")),
    "model.norm_groups": F(8, "GroupNorm: gcd(norm_groups, channels) groups (one channel per "
                           "group when channels <= norm_groups)", low=1, high=MAX_WIDTH),
    "model.norm_group_size": F(0, "GroupNorm: > 0 sets channels per group instead of "
                               "norm_groups (the same grouping at every width)", low=0,
                               high=MAX_WIDTH),
    "model.skip": F(False, "residual connections in the plain CNN"),
    "model.skip_before_relu": F(False, "with model.skip: add the input before the ReLU, "
                                "relu(x + norm(conv(x))) as in ResNet v1, instead of after it, "
                                "x + relu(norm(conv(x)))"),
    "model.head": F("flatten", choices=Table("fedjax_deep.models", "HEADS")),
    "model.widths": F((), "per-layer channels (overrides width), e.g. (16, 32, 64, 64)",
                      items=(1, MAX_WIDTH)),
    "model.strides": F((), "per-layer strides, default 1", items=(1, 64)),
    "model.conv_impl": F("im2col", "'native' is lax.conv_general_dilated",
                         choices=Table("fedjax_deep.models", "CONV_IMPLS")),
    "model.width_mult": F(1.0, "vgg/resnet: scales every stage's channels",
                          low=0.0, high=64.0, open_low=True),
    "model.stem_kernel": F(0, "first conv's kernel (0: kernel_size); resnet ImageNet stem: 7",
                           low=0, high=63),
    "model.stem_stride": F(1, "resnet ImageNet stem: 2", low=1, high=64),
    "model.stem_pool": F(False, "3x3 stride-2 max pool after the stem; resnet ImageNet stem: true"),
    "model.head_pool": F(1, "vgg: adaptive average pool size before the classifier (ImageNet: 7)",
                         low=1, high=64),
    "model.classifier": F((), "vgg: hidden classifier widths (ImageNet: (4096, 4096))",
                          items=(1, MAX_WIDTH)),
    "model.heads": F(4, "transformer/vit: attention heads (must divide model.width)",
                     low=1, high=MAX_WIDTH),
    "model.patch_size": F(4, "vit: side of the square patches (must divide the image)",
                          low=1, high=1024),
    "model.pool": F("cls", "vit: 'cls' (a class token) or 'mean' (the mean over patches)",
                    choices=Table("fedjax_deep.models", "POOLS")),
    "data.seq_len": F(32, "tinygrammar: tokens per example (x and y are [N, seq_len])",
                      low=2, high=4096),
    "fl.num_clients": F(10, low=1, high=1_000_000),
    "fl.cohort_size": F(0, "> 0: clients sampled per round (uniform, without replacement)",
                        low=0, high=1_000_000),
    "fl.local_epochs": F(8, low=0, high=10_000),
    "fl.local_steps": F(0, "> 0 replaces local_epochs by a fixed number of local steps",
                        low=0, high=MAX_STEPS),
    "fl.batch_size": F(32, low=1, high=2**20),
    "fl.execution": F("auto", "fedjax_deep.fl.execution",
                      choices=Table("fedjax_deep.fl.execution", "STRATEGIES")),
    "fl.chunk_size": F(0, "clients per chunk for 'chunked' (0 -> 1) and per device for 'sharded'",
                       low=0, high=1_000_000),
    "fl.bn_stats": F("average", "BatchNorm statistics: 'average' (weighted) or 'local' (FedBN)",
                     choices=("average", "local")),
    "fl.nonfinite": F("stop", "a non-finite round: 'stop' the run, or 'skip' such client updates",
                      choices=("stop", "skip")),
    "fl.divergence": F(True),
    "fl.grad_divergence": F(True),
    "fl.averaging_penalty": F(False, "each evaluation also logs <split>/client_accuracy (the "
                              "client models before averaging, weighted mean) and "
                              "<split>/averaging_penalty (that minus the averaged model's); "
                              "mode fl"),
    "fl.fork_rounds": F((), "rounds (1-based) at which to fork from the global model: null "
                        "clients on the whole training set against the round's FL clients "
                        "(fork/<layer>/...) and the layer mixes (fork/mix/...); () = none; "
                        "mode fl", items=(1, MAX_STEPS)),
    "fl.fork_last": F(False, "also fork at the last round (num_rounds)"),
    "fl.fork_mix_clients": F(0, "the layer mixes at a fork use the first N clients' own weights "
                             "(each costs 3 x layers evaluations of the test set); 0: all",
                             low=0, high=1_000_000),
    "fl.cka_probe": F(0, "> 0: each round also logs the linear CKA between client models' layer "
                      "activations on the first N test examples (0: off)", low=0, high=1_000_000),
    "fl.step_budgets": F((), "per-client local step budgets, one per client of fl.num_clients "
                         "(a client takes at most min(budget, its real steps)); (): every client "
                         "takes all its steps", items=(1, MAX_STEPS)),
    "fl.budget_dist": F("none", "each round, draw every client's step budget: 'uniform' "
                        "(integers in [ceil(budget_min_fraction * S), S]) or 'none'",
                        choices=("none", "uniform")),
    "fl.budget_min_fraction": F(0.5, "with budget_dist=uniform: the smallest budget as a share "
                                "of S", low=0.0, high=1.0, open_low=True),
    "fl.dropout_rate": F(0.0, "each round, each client drops out with this probability: no "
                         "steps, weight 0, its persistent state untouched", low=0.0, high=0.99),
    "fl.straggler_rate": F(0.0, "each round, each client straggles with this probability: it "
                           "takes only straggler_fraction of its budget (at least 1 step)",
                           low=0.0, high=1.0),
    "fl.straggler_fraction": F(0.5, "share of its budget a straggler completes",
                               low=0.0, high=1.0, open_low=True),
    "server_opt.variant": F("paper", "adam, yogi, adagrad: 'paper' (Reddi et al. 2021, Alg. 2: "
                            "no bias correction, eps = tau outside the square root, Adagrad with "
                            "momentum b1) or 'optax' (optax's bias-corrected optimizers)",
                            choices=("paper", "optax")),
    "algorithm.variate_weights": F("uniform", "scaffold, feddyn: how the server's control "
                                   "variate averages the clients' (c, h): 'uniform' (1/P, as in "
                                   "the papers: the fixed point minimizes the plain mean of client "
                                   "losses) or 'examples' (by example counts, as the model average: "
                                   "the example-weighted minimizer)",
                                   choices=("uniform", "examples")),
    "loss.name": F("softmax_cross_entropy", "fedjax_deep.losses: (outputs, batch) -> per-example "
                   "loss and metrics (fedjax_deep.register_loss adds one)",
                   choices=Table("fedjax_deep.losses", "LOSSES")),
    "client_opt.name": F("sgd", choices=Table("fedjax_deep.optimizers", "CLIENT_OPTIMIZERS")),
    "client_opt.learning_rate": F(0.02, low=0.0, high=1e6, open_low=True),
    "client_opt.momentum": F(0.9, low=0.0, high=0.999999),
    "client_opt.weight_decay": F(5e-4, "coupled, PyTorch-style", low=0.0, high=1e6),
    "algorithm.name": F("fedavg", "fedjax_deep.fl.algorithms: fedavg (with server_opt: FedAvgM, "
                        "FedAdam, FedYogi, FedAdagrad), fedprox, scaffold, fednova, feddyn, fedbn",
                        choices=Table("fedjax_deep.fl.algorithms", "REGISTRY")),
    "algorithm.mu": F(0.01, "fedprox: weight of the proximal term (0: FedAvg)", low=0.0, high=1e6),
    "algorithm.alpha": F(0.01, "feddyn: weight of the dynamic regularizer",
                         low=0.0, high=1e6, open_low=True),
    "server_opt.name": F("sgd", "the server optimizer on the pseudo-gradient: sgd (learning_rate "
                         "1, momentum 0 is FedAvg; momentum > 0 is FedAvgM), adam, yogi, adagrad",
                         choices=Table("fedjax_deep.optimizers", "SERVER_OPTIMIZERS")),
    "server_opt.learning_rate": F(1.0, low=0.0, high=1e6, open_low=True),
    "server_opt.momentum": F(0.0, "sgd", low=0.0, high=0.999999),
    "server_opt.b1": F(0.9, "adam, yogi (and adagrad, variant paper)", low=0.0, high=0.999999),
    "server_opt.b2": F(0.99, "adam, yogi", low=0.0, high=0.999999),
    "server_opt.eps": F(1e-3, "adam, yogi, adagrad: the adaptivity tau of Reddi et al. 2021",
                        low=0.0, high=1e6, open_low=True),
    "privacy.clip_norm": F(0.0, "> 0: user-level DP-FedAvg (fedjax_deep.fl.privacy): each "
                           "client's update clipped to this L2 norm, the sum noised, divided by "
                           "the expected cohort size (0: off)", low=0.0, high=1e6),
    "privacy.noise_multiplier": F(0.0, "z: Gaussian noise of std z * clip_norm on the sum of "
                                  "clipped updates (0 with target_epsilon > 0: calibrated)",
                                  low=0.0, high=1e4),
    "privacy.clip": F("flat", "'flat' (one norm over the whole update) or 'per_layer' (each of "
                      "the L leaves to clip_norm / sqrt(L))", choices=("flat", "per_layer")),
    "privacy.delta": F(1e-5, "the delta at which epsilon is reported", low=0.0, high=0.1,
                       open_low=True),
    "privacy.target_epsilon": F(0.0, "> 0: the budget; with noise_multiplier 0 the noise is "
                                "calibrated to spend it in num_rounds, else the run stops before "
                                "the round that would exceed it (0: none)", low=0.0, high=1e4),
    "privacy.accountant": F("rdp", "fedjax_deep.accounting: 'rdp' or 'pld' (Poisson or full "
                            "cohorts only)", choices=("rdp", "pld")),
    "privacy.adaptive_quantile": F(0.0, "> 0: adaptive clipping toward this quantile of the "
                                   "update norms (Andrew et al. 2021; 0: fixed clip_norm)",
                                   low=0.0, high=1.0),
    "privacy.adaptive_lr": F(0.2, "adaptive clipping's geometric rate eta", low=0.0, high=100.0,
                             open_low=True),
    "privacy.adaptive_count_noise": F(0.0, "adaptive clipping's count noise sigma_b (0: the "
                                      "expected cohort / 20); needs 2 sigma_b > z",
                                      low=0.0, high=1e6),
    "fl.cohort_sampling": F("fixed", "'fixed' (fl.cohort_size clients without replacement) or "
                            "'poisson' (each client with probability fl.cohort_size / "
                            "fl.num_clients, in a fixed number of padded slots)",
                            choices=("fixed", "poisson")),
    "checkpoint.every_rounds": F(1, "0: only at the end", low=0, high=MAX_STEPS),
    "checkpoint.keep": F(3, low=1, high=10_000),
    "eval.every_rounds": F(1, "also after round 1 and after the last round", low=1, high=MAX_STEPS),
    "eval.batch_size": F(512, low=1, high=2**20),
    "log.tensorboard": F("auto", "TensorBoard event files beside metrics.jsonl: 'auto' (when "
                         "tensorboardX is installed), 'on' or 'off'", choices=("auto", "on", "off")),
    "compare.reference": F("", "after a sweep, also write the tuned comparison (fedjax_deep."
                           "analysis: compare.md, curves.png) against this arm, e.g. "
                           "'mode=centralized,fl.batch_size=36' ('': none)"),
    "compare.group": F("model.depth", "the comparison's groups: a field, or several "
                       "comma-separated"),
    "sweep": F((), "((dotted field, (values...)), ...): cartesian product of sub-runs "
               "(fedjax_deep.sweep)"),
    "precision": F("default", "float32 matmul precision and compute dtype: 'default' (the "
                   "backend's fast float32: TF32 on recent NVIDIA GPUs, bfloat16 passes on TPU), "
                   "'highest' (exact float32 products) or 'bf16' (parameters, optimizer state and "
                   "loss in float32; activations and products in bfloat16)",
                   choices=("default", "highest", "bf16")),
    "sweep_axis": F("auto", "sweep points that differ only in seed or optimizer/algorithm "
                    "coefficients share one compiled program: 'auto' (vmap on GPU/TPU, one member "
                    "after another inside the program on CPU), 'on' (vmap everywhere) or 'off' "
                    "(one program per point)", choices=("auto", "on", "off")),
    "compile_cache": F("auto", "JAX's persistent compilation cache: 'auto' (a per-user "
                       "directory: $FEDJAX_DEEP_COMPILE_CACHE, else $XDG_CACHE_HOME or ~/.cache "
                       "/fedjax_deep/jax), 'off', or a directory"),
}  # fmt: skip
del F


def default_config() -> ml_collections.ConfigDict:
    """Every field a config may set, with its default (the rows of :data:`FIELDS`)."""
    c = ml_collections.ConfigDict()
    for name, spec in FIELDS.items():
        node = c
        *groups, leaf = name.split(".")
        for group in groups:
            if group not in node:
                node[group] = ml_collections.ConfigDict()
            node = node[group]
        node[leaf] = spec.default
    return c


def load_config(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Runs a config file's ``get_config()``; ``file.py:arg`` runs ``get_config(arg)``.

    ``file.py:arg`` names one member of a family of configs kept in one file (big_vision's
    convention). A file inside a package (``__init__.py`` in its folder and the folders above) is
    loaded as a module of that package, with the package's root on ``sys.path`` while it loads, so a
    study's configs import its shared settings (``from experiments.depth_divergence.common import
    ...``) from wherever the command runs.
    """
    text, arg = str(path), None
    if not pathlib.Path(text).is_file() and ":" in text:
        text, arg = text.rsplit(":", 1)
    path = pathlib.Path(text)
    shown = str(path) if arg is None else f"{path}:{arg}"
    if not path.is_file():
        raise ConfigError("file", shown, "no such config file; pass --config configs/<name>.py")
    parts, root = [path.stem], path.resolve().parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    name = ".".join(parts) if len(parts) > 1 else f"_fedjax_deep_config_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    with _on_sys_path(str(root) if len(parts) > 1 else None):
        try:
            spec.loader.exec_module(module)
        except SystemExit as e:
            raise ConfigError("file", shown, f"called sys.exit({e.code!r}) while loading; a "
                              "config file defines get_config() and exits nothing") from None  # fmt: skip
        except Exception as e:
            raise ConfigError(
                "file", shown, f"cannot be loaded ({type(e).__name__}: {_first_line(e)})"
            ) from None
        if not hasattr(module, "get_config"):
            raise ConfigError("file", shown, "the file defines no get_config()")
        try:
            config = module.get_config() if arg is None else module.get_config(arg)
        except SystemExit as e:
            raise ConfigError("file", shown, f"get_config() called sys.exit({e.code!r}); it must "
                              "return an ml_collections.ConfigDict") from None  # fmt: skip
        except Exception as e:
            raise ConfigError(
                "file", shown, f"get_config() failed ({type(e).__name__}: {_first_line(e)})"
            ) from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError("file", shown, "get_config() must return an ml_collections.ConfigDict")
    return config


@contextlib.contextmanager
def _on_sys_path(directory: str | None):
    """``directory`` first on ``sys.path`` while a config loads (nothing when None)."""
    if directory is None:
        yield
        return
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)


def _first_line(e: BaseException) -> str:
    lines = str(e).splitlines()
    return lines[0][:200] if lines else ""


def _parse_value(field: str, text: str, current: Any) -> Any:
    """An override's text as a value of ``current``'s type (Python literals for tuples)."""
    if len(text) > 100_000:
        raise ConfigError(
            field, text, "the value is over 100,000 characters; write it in a config file"
        )
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(field, text, "expected a boolean: true or false")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(field, text, "expected an integer") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(field, text, "expected a number") from None
    if isinstance(current, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ConfigError(
            field, text, f"expected a Python literal like {current!r} (at most a few levels deep)"
        ) from None


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(field)
        node = node[part]
    return node


def _coerce(field: str, value: Any, current: Any) -> Any:
    """``value`` in ``current``'s type, or a :class:`ConfigError` (never ml_collections' TypeError)."""
    if isinstance(current, float) and _is_int(value):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    same = isinstance(value, bool) == isinstance(current, bool) and (
        isinstance(value, type(current)) or (_is_int(current) and _is_int(value))
    )
    if not same:
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                tuple: f"a tuple like {current!r}"}.get(type(current), type(current).__name__)  # fmt: skip
        raise ConfigError(field, value, f"expected {kind}")
    return value


def as_field_type(config: ml_collections.ConfigDict, field: str, value: Any) -> Any:
    """``value`` as ``set_field`` would store it in the existing ``field`` (a string parsed, an int
    made a float for a float field, a list a tuple), or a :class:`ConfigError`."""
    current = get_field(config, field)
    if isinstance(value, str) and not isinstance(current, str):
        value = _parse_value(field, value, current)
    return _coerce(field, value, current)


def set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    """Sets an existing dotted field; unknown fields and wrong types are a :class:`ConfigError`."""
    parts = field.split(".")
    node = config
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            where = ".".join(parts[:i])
            known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            raise ConfigError(
                field,
                value,
                f"no such field; fields of config{'.' + where if where else ''}: "
                f"{', '.join(known)}",
            )
        if i < len(parts) - 1:
            node = node[part]
    current = node[parts[-1]]
    if isinstance(current, ml_collections.ConfigDict):
        raise ConfigError(field, value, "is a group; set one of its fields")
    if isinstance(value, str) and not isinstance(current, str):
        value = _parse_value(field, value, current)
    value = _coerce(field, value, current)
    with node.unlocked():
        node[parts[-1]] = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]):
    """Applies ``['--config.fl.num_clients=20', ...]`` (or without the leading ``--config.``)."""
    for item in overrides:
        text = item.removeprefix("--").removeprefix("config.")
        if "=" not in text:
            raise ConfigError(text, None, "write overrides as --config.<field>=<value>")
        field, value = text.split("=", 1)
        set_field(config, field, value)
    return config


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    """``{'fl.num_clients': 10, ...}``: a config (or its JSON dict) as dotted fields."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict | dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field against :data:`FIELDS` and the rules between fields (no I/O).

    The sweep's entries are checked by :func:`fedjax_deep.sweep.expand`. Raises
    :class:`ConfigError`.
    """
    flat = flatten(config)
    for field, value in flat.items():
        if field not in FIELDS:
            raise ConfigError(field, value, "no such field; see fedjax_deep.config.FIELDS")
        FIELDS[field].check(field, value)
    for field in FIELDS:
        if field not in flat:
            raise ConfigError(field, None, "missing; start the config from default_config()")
    for rule in RULES:
        rule(config)


def _require(cond: bool, field: str, value: Any, fix: str) -> None:
    if not cond:
        raise ConfigError(field, value, fix)


def _odd_kernels(c) -> None:
    k = c.model.kernel_size
    _require(k % 2 == 1, "model.kernel_size", k, "must be odd")
    s = c.model.stem_kernel
    _require(s == 0 or s % 2 == 1, "model.stem_kernel", s, "must be 0 (= kernel_size) or odd")


def _per_layer_tuples(c) -> None:
    for field in ("widths", "strides"):
        v = c.model[field]
        _require(len(v) in (0, c.model.depth), f"model.{field}", v,
                 f"give () or {c.model.depth} values (one per layer of model.depth)")  # fmt: skip


def _group_size(c) -> None:
    size = c.model.norm_group_size
    if not size or c.model.norm != "group" or c.model.name not in ("plain_cnn", "plain_mlp"):
        return  # vgg/resnet channel counts are checked when the model is built
    for w in tuple(c.model.widths) or (c.model.width,):
        _require(w % size == 0, "model.norm_group_size", size,
                 f"must divide every layer's width ({w} here): use a divisor, or 0")  # fmt: skip


def _compare_reference(c) -> None:
    text = c.compare.reference
    if not text:
        return
    from fedjax_deep.analysis.runs import parse_reference  # the reader's format, no JAX

    try:
        fields = parse_reference(text)
    except ValueError as e:
        raise ConfigError("compare.reference", text, f"{e} ('' for no comparison)") from None
    for f in fields:
        _require(f in FIELDS, "compare.reference", text,
                 f"{f!r} is not a config field; name swept fields, e.g. 'mode'")  # fmt: skip
    for f in c.compare.group.split(","):
        _require(f.strip() in FIELDS, "compare.group", c.compare.group,
                 f"{f.strip()!r} is not a config field; e.g. 'model.depth'")  # fmt: skip


def _clients(c) -> None:
    _require(c.fl.cohort_size <= c.fl.num_clients, "fl.cohort_size", c.fl.cohort_size,
             f"must be <= fl.num_clients={c.fl.num_clients} (0 = every client every round)")  # fmt: skip
    _require(c.fl.local_epochs >= 1 or c.fl.local_steps >= 1, "fl.local_epochs",
             c.fl.local_epochs, "must be >= 1 (or set fl.local_steps >= 1)")  # fmt: skip


def _augment_needs_images(c) -> None:
    from fedjax_deep.data import INPUT_SHAPES

    _require(
        c.data.augment == "none" or len(INPUT_SHAPES.get(c.data.name, ())) == 3,
        "data.augment",
        c.data.augment,
        f"crops and flips need images; {c.data.name} is not an image dataset (use none)",
    )


def _sweep_is_a_tuple(c) -> None:
    _require(isinstance(c.sweep, tuple | list), "sweep", c.sweep,
             "must be a tuple of (field, values) pairs, e.g. (('model.depth', (2, 4)),)")  # fmt: skip


def _algorithm(c) -> None:
    """What the algorithm declares it needs (:class:`fedjax_deep.fl.algorithms.AlgorithmSpec`)."""
    from fedjax_deep.fl.algorithms import REGISTRY

    name, default = c.algorithm.name, FIELDS["algorithm.name"].default
    spec = REGISTRY[name]
    _require(name == default or c.mode == "fl", "algorithm.name", name,
             f"mode {c.mode} trains without averaging clients; use {default}")  # fmt: skip
    _require(not spec.needs_batch_norm or c.model.norm == "batch", "algorithm.name", name,
             f"{name} keeps BatchNorm layers local; model.norm is {c.model.norm!r} (use batch)")  # fmt: skip
    _require(spec.uses_server_optimizer or c.server_opt.name == "sgd", "server_opt.name",
             c.server_opt.name, f"{name} makes its own server update; use sgd")  # fmt: skip
    _require(c.server_opt.momentum == 0.0 or c.server_opt.name == "sgd", "server_opt.momentum",
             c.server_opt.momentum, f"only server_opt.name=sgd uses momentum (FedAvgM); "
             f"{c.server_opt.name} has server_opt.b1: set momentum to 0.0")  # fmt: skip


def _forks(c) -> None:
    """The averaging penalty and forks read FL's clients before averaging (fedjax_deep.fl.forks)."""
    forks = bool(tuple(c.fl.fork_rounds)) or c.fl.fork_last
    fork_field = "fl.fork_rounds" if c.fl.fork_rounds else "fl.fork_last"
    for field, on in (("fl.averaging_penalty", c.fl.averaging_penalty), (fork_field, forks)):
        _require(not on or c.mode == "fl", field, get_field(c, field),
                 f"mode {c.mode} has no averaged clients to compare; use mode fl or turn it off")  # fmt: skip
    late = [r for r in c.fl.fork_rounds if r > c.num_rounds]
    _require(not late, "fl.fork_rounds", c.fl.fork_rounds,
             f"round {late[0] if late else 0} is after num_rounds={c.num_rounds}; fork at rounds "
             "<= num_rounds (fl.fork_last=true forks at the last)")  # fmt: skip
    if forks:
        from fedjax_deep.fl.algorithms import REGISTRY

        _require(c.fl.bn_stats == "average", "fl.bn_stats", c.fl.bn_stats,
                 "a fork starts every client from the global BatchNorm statistics; use average "
                 "or turn forks off")  # fmt: skip
        _require(not REGISTRY[c.algorithm.name].needs_batch_norm, "algorithm.name",
                 c.algorithm.name, "keeps BatchNorm local, so clients share no start to fork "
                 "from; use another algorithm or turn forks off")  # fmt: skip


def _heterogeneity(c) -> None:
    """Unequal local work (fedjax_deep.fl.heterogeneity): federated runs only, one budget source."""
    fl = c.fl
    active = [(f, fl[f]) for f in ("step_budgets", "dropout_rate", "straggler_rate")
              if fl[f]] + ([("budget_dist", fl.budget_dist)] if fl.budget_dist != "none" else [])  # fmt: skip
    if not active:
        return
    field, value = active[0]
    _require(c.mode == "fl", f"fl.{field}", value,
             f"unequal local work needs mode fl (mode is {c.mode}); leave it at its default")  # fmt: skip
    budgets = tuple(fl.step_budgets)
    _require(len(budgets) in (0, fl.num_clients), "fl.step_budgets", budgets,
             f"give () or fl.num_clients={fl.num_clients} budgets, one per client")  # fmt: skip
    _require(not budgets or fl.budget_dist == "none", "fl.budget_dist", fl.budget_dist,
             "fl.step_budgets already fixes every budget: use none, or step_budgets=()")  # fmt: skip


def _privacy(c) -> None:
    """DP-FedAvg and Poisson cohorts (fedjax_deep.fl.privacy, fedjax_deep.accounting)."""
    from fedjax_deep.fl.algorithms import REGISTRY

    p, on = c.privacy, c.privacy.clip_norm > 0
    for field in ("noise_multiplier", "target_epsilon", "adaptive_quantile"):
        _require(on or not p[field], f"privacy.{field}", p[field],
                 "needs privacy.clip_norm > 0 (DP-FedAvg clips before it adds noise)")  # fmt: skip
    poisson = c.fl.cohort_sampling == "poisson"
    _require(not poisson or c.fl.cohort_size > 0, "fl.cohort_sampling", c.fl.cohort_sampling,
             "poisson needs fl.cohort_size > 0: the expected cohort size")  # fmt: skip
    for field, value, active in (
        ("privacy.clip_norm", p.clip_norm, on),
        ("fl.cohort_sampling", c.fl.cohort_sampling, poisson),
    ):
        _require(not active or c.mode == "fl", field, value,
                 f"needs mode fl (mode {c.mode} has no cohort of users to protect)")  # fmt: skip
    name = c.algorithm.name
    _require(not on or REGISTRY[name].sends_model, "privacy.clip_norm", p.clip_norm,
             f"{name}'s clients send more than their model; DP-FedAvg needs fedavg or fedprox")  # fmt: skip
    fixed = c.fl.cohort_sampling == "fixed" and 0 < c.fl.cohort_size < c.fl.num_clients
    noisy = p.noise_multiplier > 0 or p.target_epsilon > 0
    _require(not (on and noisy and fixed and p.accountant == "pld"), "privacy.accountant",
             p.accountant, "PLD has no event for fixed-size cohorts without replacement; use rdp "
             "or fl.cohort_sampling=poisson")  # fmt: skip
    if on and p.adaptive_quantile and p.noise_multiplier:
        sigma = p.adaptive_count_noise or (c.fl.cohort_size or c.fl.num_clients) / 20
        _require(p.noise_multiplier < 2 * sigma, "privacy.noise_multiplier", p.noise_multiplier,
                 f"adaptive clipping needs z < 2 * count noise = {2 * sigma:g}; raise "
                 "privacy.adaptive_count_noise")  # fmt: skip


def _own_data(c) -> None:
    """What the own-data sources need named (data.tfds_name, data.leaf_dir)."""
    _require(c.data.name != "tfds" or bool(c.data.tfds_name), "data.tfds_name", c.data.tfds_name,
             "data.name=tfds needs a dataset name, e.g. data.tfds_name=mnist")  # fmt: skip
    _require(c.data.name != "leaf" or bool(c.data.leaf_dir), "data.leaf_dir", c.data.leaf_dir,
             "data.name=leaf needs the folder holding train/ and test/ LEAF JSON files")  # fmt: skip
    _require(not c.data.client_key or c.data.name == "tfds", "data.client_key",
             c.data.client_key, "only data.name=tfds reads a client feature; set it to ''")  # fmt: skip


def _client_examples(c) -> None:
    n = c.data.client_examples
    _require(n == 0 or c.data.partition == "iid_sampled", "data.client_examples", n,
             f"only partition 'iid_sampled' draws it; partition is {c.data.partition!r} "
             "(set 0, or use iid_sampled)")  # fmt: skip


def _transformer(c) -> None:
    _require(c.model.name not in ("transformer", "vit") or c.model.width % c.model.heads == 0,
             "model.heads", c.model.heads,
             f"must divide model.width={c.model.width} (e.g. 4 heads of width/4)")  # fmt: skip
    _require(c.model.name != "transformer" or c.loss.name != "softmax_cross_entropy",
             "loss.name", c.loss.name, "model.name=transformer predicts every next token "
             "(logits [B, T, V]); use next_token_cross_entropy")  # fmt: skip


RULES = (
    _algorithm,
    _odd_kernels,
    _per_layer_tuples,
    _group_size,
    _compare_reference,
    _clients,
    _augment_needs_images,
    _sweep_is_a_tuple,
    _forks,
    _heterogeneity,
    _privacy,
    _own_data,
    _client_examples,
    _transformer,
)


@contextlib.contextmanager
def config_errors():
    """Turns a library's :class:`~fedjax_deep.errors.FieldError` into a :class:`ConfigError`."""
    try:
        yield
    except ConfigError:
        raise
    except FieldError as e:
        raise ConfigError(e.field, e.value, e.fix) from None
