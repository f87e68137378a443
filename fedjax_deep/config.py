"""Experiment configs: the defaults, loading ``get_config()`` files, dotted overrides, validation.

Config files in ``configs/`` define ``get_config()`` and start from :func:`default_config`. Every field
a config may hold exists in :func:`default_config`; a field that does not, a value of the wrong type or
out of range is a :class:`ConfigError`, raised before any data is loaded or any file is written. The
command line turns it into one line on stderr and exit code 2.

Sweeps: ``config.sweep`` is a tuple of ``(dotted field, values)`` pairs; a run expands their
cartesian product into one sub-run per point (see ``fedjax_deep.train.run``).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import pathlib
from typing import Any

import ml_collections

MODES = ("fl", "centralized", "independent")


class ConfigError(ValueError):
    """A bad config field: names the field, the value and the fix, in one line."""

    def __init__(self, field: str, value: Any, fix: str):
        self.field, self.value, self.fix = field, value, fix
        super().__init__(f"config.{field}={value!r}: {fix}")


def default_config() -> ml_collections.ConfigDict:
    """Every field a config may set, with its default."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    # 'fl' (federated), 'centralized' (one learner on the union of the client data, the same
    # examples per round) or 'independent' (fl.num_clients SGD runs from one init, never averaged:
    # the null reference of E7; divergence is measured between the runs)
    c.mode = "fl"
    c.num_rounds = 5

    c.data = ml_collections.ConfigDict()
    c.data.name = "digits"
    c.data.test_fraction = 0.2
    c.data.partition = "iid"  # 'iid', 'dirichlet', 'shards' or 'full' (fedjax_deep.data.partition)
    c.data.dirichlet_alpha = 0.5
    c.data.classes_per_client = 2  # for 'shards'
    c.data.data_dir = ""  # prepared tensorflow-datasets folders ('' = $TFDS_DATA_DIR or ~/...)
    c.data.manual_dir = ""  # Tiny-ImageNet: the folder holding tiny-imagenet-200 ('' = data_dir)
    c.data.augment = "none"  # 'none' or 'crop_flip' (image datasets)
    c.data.placement = (
        "auto"  # client data on the 'device' once, or on the 'host' (cohort per round)
    )

    c.model = ml_collections.ConfigDict()
    c.model.name = "plain_cnn"
    c.model.depth = 4
    c.model.width = 32
    c.model.kernel_size = 3
    c.model.norm = "group"
    c.model.norm_groups = 8
    c.model.skip = False
    c.model.head = "flatten"  # 'flatten' or 'avgpool'
    c.model.widths = ()  # per-layer channels (overrides width), e.g. (16, 32, 64, 64)
    c.model.strides = ()  # per-layer strides, default 1
    c.model.conv_impl = "im2col"  # 'im2col' or 'native' (lax.conv_general_dilated)
    c.model.width_mult = 1.0  # vgg/resnet: scales every stage's channels
    c.model.stem_kernel = 0  # first conv's kernel (0: kernel_size); resnet ImageNet stem: 7
    c.model.stem_stride = 1  # resnet ImageNet stem: 2
    c.model.stem_pool = False  # 3x3 stride-2 max pool after the stem; resnet ImageNet stem: true
    c.model.head_pool = 1  # vgg: adaptive average pool size before the classifier (ImageNet: 7)
    c.model.classifier = ()  # vgg: hidden classifier widths (ImageNet: (4096, 4096))

    c.fl = ml_collections.ConfigDict()
    c.fl.num_clients = 10
    c.fl.cohort_size = 0  # > 0: clients sampled per round (uniform, without replacement)
    c.fl.local_epochs = 8
    c.fl.local_steps = 0  # > 0 replaces local_epochs by a fixed number of local steps
    c.fl.batch_size = 32
    c.fl.execution = "auto"  # 'auto', 'vmap', 'chunked' or 'sharded' (fedjax_deep.fl.execution)
    c.fl.chunk_size = 0  # clients per chunk for 'chunked' (0 -> 1) and per device for 'sharded'
    c.fl.bn_stats = "average"  # BatchNorm statistics: 'average' (weighted) or 'local' (FedBN)
    c.fl.nonfinite = "stop"  # a non-finite round: 'stop' the run, or 'skip' such client updates
    # Seeds of a sweep in one compiled program: 'auto' (GPU/TPU yes, CPU no), 'on' or 'off'
    c.fl.seed_axis = "auto"
    c.fl.divergence = True
    c.fl.grad_divergence = True

    c.client_opt = ml_collections.ConfigDict()
    c.client_opt.name = "sgd"
    c.client_opt.learning_rate = 0.02
    c.client_opt.momentum = 0.9
    c.client_opt.weight_decay = 5e-4

    c.server_opt = ml_collections.ConfigDict()
    c.server_opt.name = "sgd"  # sgd with learning_rate 1 and momentum 0 is FedAvg
    c.server_opt.learning_rate = 1.0
    c.server_opt.momentum = 0.0

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_rounds = 1  # 0: only at the end
    c.checkpoint.keep = 3

    c.eval = ml_collections.ConfigDict()
    c.eval.every_rounds = 1  # also after round 1 and after the last round
    c.eval.batch_size = 512

    c.sweep = ()  # ((dotted field, (values...)), ...): cartesian product of sub-runs
    return c


def load_config(path: str | pathlib.Path) -> ml_collections.ConfigDict:
    """Runs a config file's ``get_config()``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError("file", str(path), "no such config file; pass --config configs/<name>.py")
    spec = importlib.util.spec_from_file_location(f"_fedjax_deep_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(
            "file", str(path), f"cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
    if not hasattr(module, "get_config"):
        raise ConfigError("file", str(path), "the file defines no get_config()")
    try:
        config = module.get_config()
    except Exception as e:
        raise ConfigError(
            "file", str(path), f"get_config() failed ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            "file", str(path), "get_config() must return an ml_collections.ConfigDict"
        )
    return config


def _parse_value(field: str, text: str, current: Any) -> Any:
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
    except (ValueError, SyntaxError):
        raise ConfigError(field, text, f"expected a Python literal like {current!r}") from None


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise KeyError(field)
        node = node[part]
    return node


def set_field(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    """Sets an existing dotted field; unknown fields are a :class:`ConfigError`."""
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
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
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


def _flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _require(cond: bool, field: str, value: Any, fix: str) -> None:
    if not cond:
        raise ConfigError(field, value, fix)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, int | float) and not isinstance(v, bool)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field's presence, type and range (no I/O). Raises :class:`ConfigError`."""
    from fedjax_deep.data import AUGMENTATIONS, DATASETS, INPUT_SHAPES, PARTITIONS
    from fedjax_deep.fl.execution import STRATEGIES
    from fedjax_deep.models import CONV_IMPLS, HEADS, MODELS, NORMS

    defaults = _flatten(default_config())
    flat = _flatten(config)
    for field, value in flat.items():
        if field not in defaults:
            raise ConfigError(field, value, "no such field; see fedjax_deep.config.default_config")
        default = defaults[field]
        if isinstance(default, bool):
            _require(isinstance(value, bool), field, value, "expected true or false")
        elif _is_int(default):
            _require(_is_int(value), field, value, "expected an integer")
        elif isinstance(default, float):
            _require(_is_num(value), field, value, "expected a number")
        elif isinstance(default, str):
            _require(isinstance(value, str), field, value, "expected a string")
    for field in defaults:
        _require(field in flat, field, None, "missing; start the config from default_config()")

    c = config

    def positive_int(field):
        v = get_field(c, field)
        _require(v >= 1, field, v, "must be an integer >= 1")

    _require(c.mode in MODES, "mode", c.mode, f"use one of {', '.join(MODES)}")
    _require(c.seed >= 0, "seed", c.seed, "must be an integer >= 0")
    positive_int("num_rounds")
    _require(
        c.data.name in DATASETS,
        "data.name",
        c.data.name,
        f"unknown dataset; use one of {', '.join(sorted(DATASETS))}",
    )
    _require(
        0.0 < c.data.test_fraction < 1.0,
        "data.test_fraction",
        c.data.test_fraction,
        "must be in (0, 1)",
    )
    _require(
        c.data.partition in PARTITIONS,
        "data.partition",
        c.data.partition,
        f"use one of {', '.join(PARTITIONS)}",
    )
    _require(
        c.data.dirichlet_alpha > 0,
        "data.dirichlet_alpha",
        c.data.dirichlet_alpha,
        "must be > 0 (small: few classes per client; large: close to IID)",
    )
    positive_int("data.classes_per_client")
    _require(
        c.data.augment in AUGMENTATIONS,
        "data.augment",
        c.data.augment,
        f"use one of {', '.join(AUGMENTATIONS)}",
    )
    _require(
        c.data.augment == "none" or len(INPUT_SHAPES.get(c.data.name, ())) == 3,
        "data.augment",
        c.data.augment,
        f"crops and flips need images; {c.data.name} is not an image dataset (use none)",
    )
    _require(
        c.data.placement in ("auto", "device", "host"),
        "data.placement",
        c.data.placement,
        "use auto, device or host",
    )
    _require(
        c.model.name in MODELS,
        "model.name",
        c.model.name,
        f"unknown model; use one of {', '.join(sorted(MODELS))}",
    )
    positive_int("model.depth")
    positive_int("model.width")
    _require(
        c.model.kernel_size >= 1 and c.model.kernel_size % 2 == 1,
        "model.kernel_size",
        c.model.kernel_size,
        "must be an odd integer >= 1",
    )
    _require(
        c.model.stem_kernel == 0 or (c.model.stem_kernel >= 1 and c.model.stem_kernel % 2 == 1),
        "model.stem_kernel",
        c.model.stem_kernel,
        "must be 0 (= kernel_size) or an odd integer >= 1",
    )
    positive_int("model.stem_stride")
    positive_int("model.head_pool")
    _require(
        0 < c.model.width_mult <= 64, "model.width_mult", c.model.width_mult, "must be in (0, 64]"
    )
    _require(
        isinstance(c.model.classifier, tuple | list)
        and all(_is_int(x) and x >= 1 for x in c.model.classifier),
        "model.classifier",
        c.model.classifier,
        "give () or positive hidden widths, e.g. (4096, 4096)",
    )
    _require(c.model.norm in NORMS, "model.norm", c.model.norm, f"use one of {', '.join(NORMS)}")
    positive_int("model.norm_groups")
    _require(c.model.head in HEADS, "model.head", c.model.head, f"use one of {', '.join(HEADS)}")
    _require(
        c.model.conv_impl in CONV_IMPLS,
        "model.conv_impl",
        c.model.conv_impl,
        f"use one of {', '.join(CONV_IMPLS)}",
    )
    for field in ("widths", "strides"):
        v = c.model[field]
        _require(
            isinstance(v, tuple | list)
            and (len(v) == 0 or len(v) == c.model.depth)
            and all(_is_int(x) and x >= 1 for x in v),
            f"model.{field}",
            v,
            f"give () or {c.model.depth} positive integers (one per layer)",
        )
    positive_int("fl.num_clients")
    _require(
        0 <= c.fl.cohort_size <= c.fl.num_clients,
        "fl.cohort_size",
        c.fl.cohort_size,
        f"must be in [0, fl.num_clients={c.fl.num_clients}] (0 = every client every round)",
    )
    _require(
        c.fl.local_epochs >= 1 or c.fl.local_steps >= 1,
        "fl.local_epochs",
        c.fl.local_epochs,
        "must be >= 1 (or set fl.local_steps >= 1)",
    )
    _require(
        c.fl.local_steps >= 0,
        "fl.local_steps",
        c.fl.local_steps,
        "must be >= 0 (0 = use fl.local_epochs)",
    )
    positive_int("fl.batch_size")
    _require(
        c.fl.bn_stats in ("average", "local"),
        "fl.bn_stats",
        c.fl.bn_stats,
        "use average (the server averages clients' statistics) or local (FedBN)",
    )
    _require(
        c.fl.execution in STRATEGIES,
        "fl.execution",
        c.fl.execution,
        f"use one of {', '.join(STRATEGIES)}",
    )
    _require(
        c.fl.chunk_size >= 0,
        "fl.chunk_size",
        c.fl.chunk_size,
        "must be >= 0 (0 = all clients at once, or 1 for 'chunked')",
    )
    _require(c.client_opt.name == "sgd", "client_opt.name", c.client_opt.name, "use sgd")
    _require(c.server_opt.name == "sgd", "server_opt.name", c.server_opt.name, "use sgd")
    for group in ("client_opt", "server_opt"):
        lr = c[group].learning_rate
        _require(lr > 0, f"{group}.learning_rate", lr, "must be > 0")
        mom = c[group].momentum
        _require(0 <= mom < 1, f"{group}.momentum", mom, "must be in [0, 1)")
    _require(
        c.client_opt.weight_decay >= 0,
        "client_opt.weight_decay",
        c.client_opt.weight_decay,
        "must be >= 0",
    )
    positive_int("eval.every_rounds")
    _require(
        c.checkpoint.every_rounds >= 0,
        "checkpoint.every_rounds",
        c.checkpoint.every_rounds,
        "must be >= 0 (0 = only after the last round)",
    )
    positive_int("checkpoint.keep")
    _require(
        c.fl.seed_axis in ("auto", "on", "off"),
        "fl.seed_axis",
        c.fl.seed_axis,
        "use auto (on for GPU/TPU), on or off",
    )
    _require(
        c.fl.nonfinite in ("stop", "skip"),
        "fl.nonfinite",
        c.fl.nonfinite,
        "use stop (end the run) or skip (drop non-finite client updates and count them)",
    )
    positive_int("eval.batch_size")
    _validate_sweep(c)


def _sweep_fields(entry) -> tuple[str, ...]:
    return (entry[0],) if isinstance(entry[0], str) else tuple(entry[0])


def _validate_sweep(c: ml_collections.ConfigDict) -> None:
    sweep = c.sweep
    _require(
        isinstance(sweep, tuple | list), "sweep", sweep, "must be a tuple of (field, values) pairs"
    )
    for entry in sweep:
        ok = (
            isinstance(entry, tuple | list)
            and len(entry) == 2
            and (
                isinstance(entry[0], str)
                or (
                    isinstance(entry[0], tuple | list)
                    and entry[0]
                    and all(isinstance(f, str) for f in entry[0])
                )
            )
            and isinstance(entry[1], tuple | list)
            and len(entry[1]) >= 1
        )
        _require(
            ok,
            "sweep",
            entry,
            "each entry must be ('dotted.field', (value, ...)) or "
            "(('field.a', 'field.b'), ((a1, b1), (a2, b2), ...)) for fields that move together",
        )
        fields = _sweep_fields(entry)
        if len(fields) > 1 or not isinstance(entry[0], str):
            for value in entry[1]:
                _require(
                    isinstance(value, tuple | list) and len(value) == len(fields),
                    "sweep",
                    value,
                    f"give one value per field of {fields}",
                )
        for field in fields:
            try:
                get_field(c, field)
            except KeyError:
                raise ConfigError("sweep", field, "names no config field") from None
            _require(field != "sweep", "sweep", field, "a sweep cannot sweep itself")


def expand_sweep(config: ml_collections.ConfigDict) -> list[tuple[str, ml_collections.ConfigDict]]:
    """The sweep's points as ``(name, config)``; a config without a sweep is one unnamed point.

    Entries combine as a cartesian product; an entry whose first element is a tuple of fields moves
    those fields together (``(('fl.local_epochs', 'num_rounds'), ((1, 40), (8, 5)))``). Each point
    is validated. Names read ``depth-4_mode-fl``: the last component of each field.
    """
    validate(config)
    if not config.sweep:
        return [("", config)]
    entries = []
    for entry in config.sweep:
        fields = _sweep_fields(entry)
        values = entry[1] if not isinstance(entry[0], str) else [(v,) for v in entry[1]]
        entries.append([tuple(zip(fields, v, strict=True)) for v in values])
    points = []
    for combo in itertools.product(*entries):
        assignments = [pair for group in combo for pair in group]
        point = ml_collections.ConfigDict(config.to_dict())
        for field, value in assignments:
            set_field(point, field, value)
        with point.unlocked():
            point.sweep = ()
        validate(point)
        name = "_".join(f"{f.rsplit('.', 1)[-1]}-{v}" for f, v in assignments)
        points.append((name, point))
    return points
