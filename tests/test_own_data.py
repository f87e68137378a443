"""Own data: arrays with client ids, any tfds dataset by name, LEAF's JSON layout; bad input is one
line and nothing is written."""

import json

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from fedjax_deep.config import default_config
from fedjax_deep.data import from_arrays, load, make_partition, stack_clients
from fedjax_deep.errors import DataError, PartitionError


def _data_config(**kw):
    c = default_config().data
    for k, v in kw.items():
        c[k] = v
    return c


def test_arrays_natural_clients_padded_and_masked():
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = np.asarray([0, 1, 2, 0, 1, 2, 0])
    ids = np.asarray(["b", "a", "b", "c", "a", "b", "b"])
    ds = from_arrays(x, y, client_ids=ids, test_x=x[:2], test_y=y[:2])
    assert ds.num_classes == 3 and ds.train_clients.tolist() == [1, 0, 1, 2, 0, 1, 1]
    part = make_partition(_data_config(partition="natural"), ds.train_y, 3, None, ds.train_clients)
    assert [p.tolist() for p in part] == [[1, 4], [0, 2, 5, 6], [3]]
    cd = stack_clients(ds.train_x, ds.train_y, part)
    assert cd.x.shape == (3, 4, 2) and cd.num_examples.tolist() == [2, 4, 1]
    np.testing.assert_array_equal(cd.y[0], [1, 1, 0, 0])  # client "a", then padding
    # The cap: a seeded subset of each large client, the small ones whole.
    capped = make_partition(_data_config(partition="natural", max_client_examples=2), ds.train_y,
                            3, np.random.default_rng(0), ds.train_clients)  # fmt: skip
    assert [len(p) for p in capped] == [2, 2, 1] and set(capped[1]) <= {0, 2, 5, 6}
    with pytest.raises(PartitionError, match="names 3 clients; use at most 3"):
        make_partition(_data_config(partition="natural"), ds.train_y, 4, None, ds.train_clients)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"client_ids": np.linspace(0, 1, 6)}, r"client ids of dtype float64 .*cast them"),
        ({"num_classes": 2}, r"label 4 is out of range for 2 classes.*num_classes=5"),
        ({"client_ids": np.arange(5)}, "5 client ids for 6 examples"),
    ],
)
def test_bad_arrays_are_one_line(kwargs, match):
    with pytest.raises(DataError, match=match) as e:
        from_arrays(np.ones((6, 2)), np.asarray([0, 1, 4, 0, 1, 2]), **kwargs)
    assert "\n" not in str(e.value)


def _leaf_file(path, users, make):
    blob = {"users": users, "num_samples": [], "user_data": {}}
    for u in users:
        x, y = make(u)
        blob["num_samples"].append(len(y))
        blob["user_data"][u] = {"x": x, "y": y}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(blob))


def _write_leaf(root, sizes=(9, 1, 4)):
    rng = np.random.default_rng(0)
    users = [f"f{i:04d}_{i}" for i in range(len(sizes))]

    def make(size):
        return lambda u: (rng.normal(size=(size, 5)).round(3).tolist(),
                          rng.integers(0, 3, size).tolist())  # fmt: skip

    # Two training files (LEAF shards its users), one test file.
    _leaf_file(root / "train" / "a.json", users[:2], lambda u: make(sizes[users.index(u)])(u))
    _leaf_file(root / "train" / "b.json", users[2:], lambda u: make(sizes[users.index(u)])(u))
    _leaf_file(root / "test" / "all.json", users, make(2))
    return users


def test_leaf_directory_gives_natural_clients(tmp_path):
    _write_leaf(tmp_path)
    ds = load("leaf", _data_config(leaf_dir=str(tmp_path)), None)
    assert ds.train_x.shape == (14, 5) and ds.train_x.dtype == np.float32
    assert ds.test_x.shape == (6, 5) and ds.num_classes <= 3
    part = make_partition(_data_config(partition="natural"), ds.train_y, 3, None, ds.train_clients)
    assert [len(p) for p in part] == [9, 1, 4]
    blob = json.loads((tmp_path / "train" / "a.json").read_text())
    np.testing.assert_allclose(ds.train_x[part[1]], blob["user_data"]["f0001_1"]["x"], rtol=1e-6)


def test_leaf_text_is_character_ids(tmp_path):
    _leaf_file(tmp_path / "train" / "t.json", ["u"], lambda u: (["abca", "bcab"], ["b", "c"]))
    _leaf_file(tmp_path / "test" / "t.json", ["u"], lambda u: (["cabc"], ["a"]))
    ds = load("leaf", _data_config(leaf_dir=str(tmp_path)), None)
    assert ds.num_classes == 3 and ds.train_x.tolist() == [[0, 1, 2, 0], [1, 2, 0, 1]]
    assert ds.train_y.tolist() == [1, 2] and ds.test_y.tolist() == [0]


@pytest.mark.parametrize(
    "blob,match",
    [
        ({"users": ["u"], "num_samples": [1]}, "has no key 'user_data'"),
        ({"users": ["u"], "num_samples": [1], "user_data": {"u": {"x": [[1.0]]}}},
         "no 'x' and 'y' for user 'u'"),
        ({"users": ["u"], "num_samples": [2], "user_data": {"u": {"x": [[1.0]], "y": [0]}}},
         "num_samples 2; they must agree"),
    ],
)  # fmt: skip
def test_bad_leaf_file_is_one_line_and_nothing_written(tmp_path, blob, match):
    import fedjax_deep as fd

    (tmp_path / "leaf" / "train").mkdir(parents=True)
    (tmp_path / "leaf" / "train" / "x.json").write_text(json.dumps(blob))
    _leaf_file(tmp_path / "leaf" / "test" / "t.json", ["u"], lambda u: ([[1.0]], [0]))
    c = default_config()
    c.data.name, c.data.leaf_dir, c.data.partition = "leaf", str(tmp_path / "leaf"), "natural"
    with pytest.raises(DataError, match=match) as e:
        fd.run(c, tmp_path / "run")
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()


class _FedToy(tfds.core.GeneratorBasedBuilder):
    """A tfds dataset with a client feature (mock_data fills it with random values)."""

    name = "fedjax_deep_fed_toy"
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "pixels": tfds.features.Tensor(shape=(4,), dtype=np.float32),
            "digit": tfds.features.ClassLabel(num_classes=3),
            "writer": tfds.features.ClassLabel(num_classes=4),
            "weight": tfds.features.Tensor(shape=(), dtype=np.float32),
        }))  # fmt: skip

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(), "test": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {}


def test_any_tfds_dataset_by_name_with_natural_clients(tmp_path):
    cfg = _data_config(name="tfds", tfds_name="fedjax_deep_fed_toy", data_dir=str(tmp_path),
                       feature_key="pixels", label_key="digit", client_key="writer")  # fmt: skip
    with tfds.testing.mock_data(num_examples=11):
        ds = load("tfds", cfg, None)
        source = tfds.data_source("fedjax_deep_fed_toy", split="train", data_dir=str(tmp_path))
        writers = np.asarray([source[i]["writer"] for i in range(11)])
        cfg.client_key = "weight"
        with pytest.raises(DataError, match="client ids of dtype float32") as e:
            load("tfds", cfg, None)
    assert ds.train_x.shape == (11, 4) and ds.num_classes == 3
    assert "\n" not in str(e.value)
    # Natural clients: one per distinct writer, in writer order.
    part = make_partition(_data_config(partition="natural"), ds.train_y, len(set(writers)), None,
                          ds.train_clients)  # fmt: skip
    for p, w in zip(part, sorted(set(writers.tolist())), strict=True):
        assert set(writers[p]) == {w}


def test_partition_natural_needs_client_ids():
    with pytest.raises(PartitionError, match="names no clients"):
        make_partition(ml_collections.ConfigDict({"partition": "natural"}), np.zeros(4), 2, None)
