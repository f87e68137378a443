"""LEAF's JSON layout (FEMNIST, Shakespeare, Sent140, ...) read from a directory, natural clients.

``data.leaf_dir`` holds ``train/*.json`` and ``test/*.json``, each file as LEAF writes it::

    {"users": ["u1", ...], "num_samples": [n1, ...],
     "user_data": {"u1": {"x": [...], "y": [...]}, ...}}

Every user of the training files is a client (``data.partition=natural``; the other partitions
also apply); the test files' examples, all users together, are the test split. Features that are
lists of numbers become float32 arrays ``[N, ...]`` (FEMNIST's 784 pixels stay a vector); features
that are strings (Shakespeare's 80 characters) become int32 character ids ``[N, L]`` and string
labels the id of their character, over one vocabulary sorted from every character in the files.
Clients of very unequal sizes are padded and masked as usual; ``data.max_client_examples`` caps
each one. A file with missing keys or inconsistent counts is one :class:`DataError` line.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from fedjax_deep.data.arrays import check_labels, client_codes
from fedjax_deep.data.embedded import Dataset
from fedjax_deep.errors import DataError

KEYS = ("users", "num_samples", "user_data")
LAYOUT = "{'users': [...], 'num_samples': [...], 'user_data': {user: {'x': [...], 'y': [...]}}}"


def read_split(folder: pathlib.Path) -> tuple[list, list, list]:
    """Every example of the folder's ``*.json`` files: ``(xs, ys, users)``, lists of length N."""
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DataError(f"leaf: no *.json files in {folder}; LEAF's layout is <leaf_dir>/train/"
                        "*.json and <leaf_dir>/test/*.json (set data.leaf_dir)")  # fmt: skip
    xs, ys, users = [], [], []
    for path in files:
        try:
            blob = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"leaf: {path} is not readable JSON ({type(e).__name__}: "
                            f"{(str(e).splitlines() or [''])[0][:80]})") from None  # fmt: skip
        missing = [k for k in KEYS if not isinstance(blob, dict) or k not in blob]
        if missing:
            raise DataError(f"leaf: {path} has no key {missing[0]!r}; a LEAF file holds {LAYOUT}")
        if len(blob["users"]) != len(blob["num_samples"]):
            raise DataError(f"leaf: {path} lists {len(blob['users'])} users and "
                            f"{len(blob['num_samples'])} num_samples; give one count per user")  # fmt: skip
        for user, n in zip(blob["users"], blob["num_samples"], strict=True):
            data = blob["user_data"].get(user)
            if not isinstance(data, dict) or "x" not in data or "y" not in data:
                raise DataError(f"leaf: {path}: user_data has no 'x' and 'y' for user {user!r}; "
                                f"a LEAF file holds {LAYOUT}")  # fmt: skip
            if not len(data["x"]) == len(data["y"]) == n:
                raise DataError(f"leaf: {path}: user {user!r} has {len(data['x'])} x, "
                                f"{len(data['y'])} y and num_samples {n}; they must agree")  # fmt: skip
            xs += data["x"]
            ys += data["y"]
            users += [user] * n
    if not xs:
        raise DataError(f"leaf: the files in {folder} hold no examples")
    return xs, ys, users


def _is_text(values: list) -> bool:
    return bool(values) and isinstance(values[0], str)


def _encode(values: list, vocab: dict, where: str) -> np.ndarray:
    """Strings as character ids ``[N, L]`` (single characters: ``[N]``)."""
    if len({len(v) for v in values}) != 1:
        raise DataError(f"leaf: {where} strings of different lengths; give equal-length strings")
    codes = np.asarray([[vocab[c] for c in v] for v in values], np.int32)
    return codes[:, 0] if codes.shape[1] == 1 else codes


def _numbers(values: list, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except ValueError:
        arr = np.asarray([], object)
    if arr.dtype.kind not in "iufb":
        raise DataError(f"leaf: {where} are not arrays of numbers of one shape (or strings)")
    return arr


def load_leaf(data_config, rng: np.random.Generator | None = None) -> Dataset:
    """The LEAF directory ``data_config.leaf_dir`` as a :class:`Dataset` with natural clients."""
    del rng
    if not data_config.leaf_dir:
        raise DataError("leaf: data.leaf_dir is empty; point it at a folder holding train/ and "
                        "test/ LEAF JSON files")  # fmt: skip
    root = pathlib.Path(data_config.leaf_dir)
    tx, ty, users = read_split(root / "train")
    vx, vy, _ = read_split(root / "test")
    text = [c for part in (tx, ty, vx, vy) if _is_text(part) for v in part for c in v]
    vocab = {c: i for i, c in enumerate(sorted(set(text)))}

    def convert(values, where):
        return _encode(values, vocab, where) if _is_text(values) else _numbers(values, where)

    train_x, train_y = convert(tx, "train x"), convert(ty, "train y")
    test_x, test_y = convert(vx, "test x"), convert(vy, "test y")
    if train_x.dtype.kind == "f" or test_x.dtype.kind == "f":
        train_x, test_x = train_x.astype(np.float32), test_x.astype(np.float32)
    if train_y.dtype.kind in "iu":
        train_y, test_y = train_y.astype(np.int32), test_y.astype(np.int32)
        num_classes = len(vocab) if _is_text(ty) else int(max(train_y.max(), test_y.max())) + 1
        check_labels(train_y, num_classes, "leaf train")
        check_labels(test_y, num_classes, "leaf test")
    else:
        train_y, test_y = train_y.astype(np.float32), test_y.astype(np.float32)
        num_classes = int(np.prod(train_y.shape[1:], dtype=np.int64)) if train_y.ndim > 1 else 1
    return Dataset(
        name="leaf",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        train_clients=client_codes(np.asarray(users), f"leaf {root / 'train'}"),
    )
