"""Partition iid_sampled (the paper authors' "iid"): sizes, overlap at the expected rate, seeds,
one-line errors, and centralized training on the union of the client samples."""

import itertools
import pathlib

import numpy as np
import pytest

from fedjax_deep import cli
from fedjax_deep.config import ConfigError, default_config, validate
from fedjax_deep.data import PartitionError, iid, iid_sampled, make_partition
from fedjax_deep.experiment import prepare

TINY = str(pathlib.Path(__file__).parents[1] / "configs" / "digits_tiny.py")


def test_each_client_holds_its_number_of_distinct_examples():
    parts = iid_sampled(50, 7, 20, np.random.default_rng(0))
    assert len(parts) == 7
    for p in parts:
        assert len(p) == 20 and len(np.unique(p)) == 20  # without replacement within a client
        assert p.min() >= 0 and p.max() < 50 and np.all(np.diff(p) > 0)
    # 0 takes num_examples // num_clients, as Fling's sample_num=0 does
    assert [len(p) for p in iid_sampled(50, 7, 0, np.random.default_rng(0))] == [7] * 7


def test_clients_overlap_at_the_rate_of_independent_draws():
    n_all, clients, n = 2000, 40, 200
    parts = iid_sampled(n_all, clients, n, np.random.default_rng(1))
    shared = [len(np.intersect1d(a, b)) for a, b in itertools.combinations(parts, 2)]
    # E[|A & B|] = n^2 / N = 20 for two independent draws of n from N (hypergeometric, sd ~4
    # per pair; the mean of 780 pairs moves by ~0.2)
    assert abs(np.mean(shared) - n * n / n_all) < 1.0
    assert min(shared) > 0
    held = np.bincount(np.concatenate(parts), minlength=n_all)
    assert held.mean() == clients * n / n_all  # every draw is counted: 4 clients per example
    # P(no client holds an example) = (1 - n/N)^C = 0.9^40: 29.6 of 2000 (binomial sd 5.4)
    assert 10 < np.count_nonzero(held == 0) < 55
    # the disjoint split never overlaps
    disjoint = iid(n_all, clients, np.random.default_rng(1))
    assert np.bincount(np.concatenate(disjoint)).max() == 1


def test_same_seed_same_clients_other_seed_other_clients():
    a, b, c = (iid_sampled(100, 5, 30, np.random.default_rng(s)) for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # the clients draw independently: not one permutation cut into pieces
    assert any(len(np.intersect1d(x, y)) for x, y in itertools.combinations(a, 2))


@pytest.mark.parametrize(
    "num_examples,num_clients,client_examples,field",
    [(50, 3, 51, "data.client_examples=51"), (5, 6, 0, "fl.num_clients=6")],
)
def test_bad_sizes_are_one_line_errors(num_examples, num_clients, client_examples, field):
    with pytest.raises(PartitionError) as exc:
        iid_sampled(num_examples, num_clients, client_examples, np.random.default_rng(0))
    message = str(exc.value)
    assert field in message and "\n" not in message


def test_make_partition_reads_the_config_and_the_rule_guards_other_partitions():
    config = default_config()
    config.data.partition = "iid_sampled"
    config.data.client_examples = 9
    validate(config)
    parts = make_partition(config.data, np.zeros(40, int), 4, np.random.default_rng(0))
    assert [len(p) for p in parts] == [9] * 4
    config.data.partition = "iid"
    with pytest.raises(ConfigError, match=r"data.client_examples=9.*iid_sampled") as exc:
        validate(config)
    assert "\n" not in str(exc.value)


def test_centralized_learns_on_the_union_of_the_client_samples():
    config = default_config()
    config.data.partition, config.data.client_examples = "iid_sampled", 100
    config.fl.num_clients = 4
    config.mode = "centralized"
    prepared = prepare(config)
    (union,) = prepared.partition
    np.testing.assert_array_equal(union, np.unique(np.concatenate(prepared.fl_partition)))
    assert len(union) < 400  # the samples overlap
    config.data.partition, config.data.client_examples = "iid", 0
    (whole,) = prepare(config).partition
    np.testing.assert_array_equal(whole, np.arange(len(whole)))


def test_cli_refuses_too_many_client_examples_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(
        ["train", "--config", TINY, "--workdir", str(workdir),
         "--config.data.partition=iid_sampled", "--config.data.client_examples=100000"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "data.client_examples=100000" in err, err
    assert not workdir.exists()
