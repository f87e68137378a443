"""Dataset sources: tfds on mock data, a Tiny-ImageNet folder the test writes, MNIST-1D; errors."""

import json

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from fedjax_deep import cli
from fedjax_deep.data import DataError, load, load_mnist1d
from fedjax_deep.data.sources import NORMALIZATION


def _data_config(**kw):
    base = dict(data_dir="", manual_dir="", test_fraction=0.2)
    base.update(kw)
    return ml_collections.ConfigDict(base)


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_from_tfds_mock_data(name, classes, tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        ds = load(name, _data_config(data_dir=str(tmp_path)), np.random.default_rng(0))
    assert ds.train_x.shape == (12, 32, 32, 3) and ds.test_x.shape == (12, 32, 32, 3)
    assert ds.train_x.dtype == np.float32 and ds.num_classes == classes
    assert ds.train_y.min() >= 0 and ds.train_y.max() < classes
    mean, std = NORMALIZATION[name]
    lowest = (0.0 - np.asarray(mean)) / np.asarray(std)  # pixel value 0 after normalization
    assert np.all(ds.train_x.min(axis=(0, 1, 2)) >= lowest - 1e-5)


def test_unprepared_tfds_dataset_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError) as exc:
        load("cifar10", _data_config(data_dir=str(tmp_path / "tfds")), None)
    message = str(exc.value)
    assert "cifar10" in message and str(tmp_path / "tfds") in message
    assert "fedjax-deep prepare cifar10" in message and "\n" not in message
    assert not (tmp_path / "tfds").exists()  # nothing half-written


def _write_tiny_imagenet(root, classes=3, per_class=4, val_per_class=2, size=64):
    rng = np.random.default_rng(0)
    wnids = [f"n{i:08d}" for i in range(classes)]
    (root / "tiny-imagenet-200").mkdir(parents=True)
    base = root / "tiny-imagenet-200"
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        for j in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{w}_{j}.JPEG")
    (base / "val" / "images").mkdir(parents=True)
    lines = []
    for i, w in enumerate(wnids):
        for j in range(val_per_class):
            name = f"val_{i}_{j}.JPEG"
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                base / "val" / "images" / name
            )
            lines.append(f"{name}\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return base, wnids


def test_tiny_imagenet_folder(tmp_path):
    _, wnids = _write_tiny_imagenet(tmp_path)
    ds = load("tiny_imagenet", _data_config(manual_dir=str(tmp_path)), None)
    assert ds.train_x.shape == (12, 64, 64, 3) and ds.test_x.shape == (6, 64, 64, 3)
    assert ds.num_classes == 3
    assert ds.train_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert sorted(ds.test_y.tolist()) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("damage", ["no_annotations", "wrong_size", "corrupt", "empty_class"])
def test_broken_tiny_imagenet_folder_is_a_one_line_error(tmp_path, damage):
    base, wnids = _write_tiny_imagenet(tmp_path)
    if damage == "no_annotations":
        (base / "val" / "val_annotations.txt").unlink()
    elif damage == "wrong_size":
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(
            base / "train" / wnids[1] / "images" / f"{wnids[1]}_0.JPEG"
        )
    elif damage == "corrupt":
        (base / "train" / wnids[0] / "images" / f"{wnids[0]}_2.JPEG").write_bytes(b"not a jpeg")
    else:
        for f in (base / "train" / wnids[2] / "images").iterdir():
            f.unlink()
    with pytest.raises(DataError) as exc:
        load("tiny_imagenet", _data_config(manual_dir=str(tmp_path)), None)
    assert "\n" not in str(exc.value) and str(exc.value).startswith("tiny_imagenet")


def test_mnist1d_is_generated_offline_and_deterministic():
    np.random.seed(123)  # noqa: NPY002  (checks that the package's global seeding is undone)
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    a = load_mnist1d(None)
    after = np.random.get_state()[1]  # noqa: NPY002
    b = load_mnist1d(None)
    np.testing.assert_array_equal(before, after)
    assert a.train_x.shape == (4000, 40, 1) and a.test_x.shape == (1000, 40, 1)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert sorted(np.unique(a.train_y).tolist()) == list(range(10))


TINY = "configs/digits_tiny.py"


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["--config.data.name=cifar10"], "cifar10 is not prepared"),
        (["--config.data.name=imagenet21k"], "config.data.name='imagenet21k'"),
        (["--config.data.partition=dirichlet", "--config.data.dirichlet_alpha=0"],
         "config.data.dirichlet_alpha=0.0"),
        (["--config.data.partition=dirichlet", "--config.data.dirichlet_alpha=-1"],
         "config.data.dirichlet_alpha=-1.0"),
        (["--config.data.partition=shards", "--config.data.classes_per_client=11"],
         "data.classes_per_client=11"),
        (["--config.data.name=tiny_imagenet"], "tiny_imagenet: no"),
        (["--config.data.augment=crop_flip", "--config.data.name=mnist1d"], "data.augment"),
        (["--config.fl.cohort_size=9"], "config.fl.cohort_size=9"),
    ],
)  # fmt: skip
def test_bad_data_input_exits_2_and_writes_nothing(tmp_path, capsys, overrides, expected):
    workdir = tmp_path / "run"
    code = cli.main(
        ["train", "--config", TINY, "--workdir", str(workdir),
         f"--config.data.data_dir={tmp_path / 'tfds'}", f"--config.data.manual_dir={tmp_path}",
         *overrides]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not workdir.exists() and not (tmp_path / "tfds").exists()


def test_host_placement_and_cohorts_match_device_placement(tmp_path, capsys):
    rows = {}
    for placement in ("device", "host"):
        workdir = tmp_path / placement
        code = cli.main(
            ["train", "--config", TINY, "--workdir", str(workdir), "--no-progress",
             "--config.num_rounds=2", "--config.fl.cohort_size=2",
             "--config.data.partition=dirichlet", f"--config.data.placement={placement}"]
        )  # fmt: skip
        assert code == 0
        rows[placement] = [
            json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()
        ]
        stats = json.loads((workdir / "partition.json").read_text())
        assert sum(stats["sizes"]) == 1438 and len(stats["class_histogram"]) == 4
        assert (workdir / "partition.png").stat().st_size > 1000
    assert rows["device"] == [
        {**r, "time/round_seconds": d["time/round_seconds"]}
        for r, d in zip(rows["host"], rows["device"], strict=True)
    ]
    assert rows["device"][-1]["train/num_examples"] < 1438  # 2 of 4 clients trained
