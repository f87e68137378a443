"""The config table: defaults pass their own checks, types and ranges are enforced, overrides parse."""

import math

import ml_collections
import pytest

from fedjax_deep.config import (
    FIELDS,
    ConfigError,
    apply_overrides,
    config_errors,
    default_config,
    flatten,
    set_field,
    validate,
)
from fedjax_deep.errors import (
    DataError,
    FieldError,
    InputError,
    PartitionError,
    WorkdirError,
)


def test_default_config_is_the_table_and_passes_validation():
    config = default_config()
    assert sorted(flatten(config)) == sorted(FIELDS)
    validate(config)
    for name, spec in FIELDS.items():
        spec.check(name, spec.default)


@pytest.mark.parametrize(
    "field,value,fix",
    [
        ("seed", 2**32, "must be in [0, 4294967295]"),
        ("client_opt.learning_rate", math.inf, "expected a finite number"),
        ("client_opt.weight_decay", math.nan, "expected a finite number"),
        ("client_opt.learning_rate", 0.0, "must be in (0, 1000000]"),
        ("model.width", 10**6, "must be in [1, 65536]"),
        ("model.widths", (8, 0), "expected a tuple of integers in [1, 65536]"),
        ("model.norm", "instance", "use one of"),
        ("fl.divergence", 1, "expected true or false"),
        ("num_rounds", 2.0, "expected an integer"),
    ],
)
def test_table_rejects_type_range_and_choice(field, value, fix):
    # A config file may build its ConfigDict from any dict: validation must not trust its types.
    tree = default_config().to_dict()
    node = tree
    *groups, leaf = field.split(".")
    for g in groups:
        node = node[g]
    node[leaf] = value
    config = ml_collections.ConfigDict(tree)
    with pytest.raises(ConfigError) as exc:
        validate(config)
    assert exc.value.field == field and fix in str(exc.value)
    assert str(exc.value).startswith(f"config.{field}=") and len(str(exc.value).splitlines()) == 1


def test_rules_between_fields():
    config = apply_overrides(default_config(), ["--config.fl.cohort_size=11"])
    with pytest.raises(ConfigError, match=r"config.fl.cohort_size=11: must be <= fl.num_clients"):
        validate(config)
    adam = apply_overrides(default_config(), ["--config.server_opt.name=adam"])
    validate(adam)
    with pytest.raises(ConfigError, match=r"config.server_opt.momentum=0.9: only server_opt.name"
                       r"=sgd uses momentum \(FedAvgM\); adam has server_opt.b1"):  # fmt: skip
        validate(apply_overrides(adam, ["--config.server_opt.momentum=0.9"]))
    config = apply_overrides(default_config(), ["--config.data.augment=crop_flip"])
    with pytest.raises(ConfigError, match="crops and flips need images"):
        validate(apply_overrides(config, ["--config.data.name=mnist1d"]))


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.sweep=5", "config.sweep=5: expected a tuple like ()"),
        ("--config.sweep={'a': 1}", "config.sweep={'a': 1}: expected a tuple"),
        ("--config.model.widths='abc'", "config.model.widths='abc': expected a tuple"),
        ("--config.model.depth=2.5", "config.model.depth='2.5': expected an integer"),
        ("--config.model.widths=" + "(" * 3000 + ")" * 3000, "expected a Python literal"),
        ("--config.fl.nope=1", "config.fl.nope='1': no such field"),
        ("--config.fl=1", "config.fl='1': is a group"),
    ],
)
def test_overrides_never_raise_anything_but_one_line(override, message):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(default_config(), [override])
    assert message in str(exc.value) and len(str(exc.value).splitlines()) == 1
    assert len(str(exc.value)) < 400  # huge values are cut in the message


def test_set_field_converts_ints_to_floats_and_lists_to_tuples():
    config = default_config()
    set_field(config, "client_opt.learning_rate", 1)
    set_field(config, "model.widths", [8, 8, 8, 8])
    assert config.client_opt.learning_rate == 1.0 and isinstance(
        config.client_opt.learning_rate, float
    )
    assert config.model.widths == (8, 8, 8, 8)
    validate(config)


def test_library_field_errors_become_config_errors():
    with pytest.raises(ConfigError) as exc, config_errors():
        raise FieldError("model.depth", 12, "vgg depths are 11, 13, 16, 19")
    assert str(exc.value) == "config.model.depth=12: vgg depths are 11, 13, 16, 19"
    with pytest.raises(KeyError), config_errors():  # other errors pass through untouched
        raise KeyError("x")


def test_missing_field_is_named():
    config = default_config()
    del config.fl["batch_size"]
    with pytest.raises(ConfigError, match=r"config.fl.batch_size=None: missing"):
        validate(config)
    assert isinstance(config, ml_collections.ConfigDict)


def test_group_size_and_comparison_fields_are_checked_before_a_run():
    config = apply_overrides(default_config(), ["--config.model.width=8",
                                                "--config.model.norm_group_size=3"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"norm_group_size=3: must divide every layer's width"):
        validate(config)
    validate(apply_overrides(config, ["--config.model.norm_group_size=4"]))
    for value, fix in (("mode", "use FIELD=VALUE"), ("nope=1", "'nope' is not a config field")):
        config = apply_overrides(default_config(), [f"--config.compare.reference={value}"])
        with pytest.raises(ConfigError, match=fix):
            validate(config)


def test_bad_input_is_one_family():
    for error in (ConfigError, FieldError, PartitionError, DataError, WorkdirError):
        assert issubclass(error, InputError) and issubclass(error, ValueError), error
    assert issubclass(ConfigError, FieldError) and issubclass(PartitionError, FieldError)


def test_choices_are_the_libraries_tables_read_at_validation(monkeypatch):
    from fedjax_deep import data, models, optimizers
    from fedjax_deep.fl import algorithms, execution

    expected = {
        "data.name": tuple(sorted(data.DATASETS)),
        "data.partition": data.PARTITIONS,
        "data.augment": data.AUGMENTATIONS,
        "model.name": tuple(sorted(models.MODELS)),
        "model.norm": tuple(models.NORMS),
        "model.head": tuple(models.HEADS),
        "model.conv_impl": tuple(models.CONV_IMPLS),
        "fl.execution": execution.STRATEGIES,
        "client_opt.name": tuple(optimizers.CLIENT_OPTIMIZERS),
        "server_opt.name": tuple(optimizers.SERVER_OPTIMIZERS),
        "algorithm.name": tuple(algorithms.REGISTRY),
    }
    for field, names in expected.items():
        assert FIELDS[field].choices() == names, field
    # An entry registered before validation is a valid choice.
    config = apply_overrides(default_config(), ["--config.algorithm.name=mine"])
    with pytest.raises(ConfigError, match="config.algorithm.name='mine': use one of fedavg"):
        validate(config)
    mine = algorithms.AlgorithmSpec(lambda a, s: algorithms.fedavg(s.server_optimizer))
    monkeypatch.setitem(algorithms.REGISTRY, "mine", mine)
    validate(config)
