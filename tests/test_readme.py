"""The README's Python examples run as written."""

import pathlib
import re

from fedjax_deep.sweep import expand, sweep_groups

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def _block(marker: str) -> dict:
    block = next(b for b in BLOCKS if marker in b)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def test_readme_python_example_runs():
    metrics = _block("client_update")["metrics"]
    assert metrics["loss"].shape == (4,)
    assert metrics["num_steps"].tolist() == [3, 3, 3, 3]


def test_readme_sweep_example_groups_as_it_says():
    points = expand(_block("def get_config")["get_config"]())
    groups = sweep_groups(points)
    assert len(points) == 24 and [len(g) for g in groups] == [12, 12]
