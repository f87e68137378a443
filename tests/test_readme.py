"""The README's Python example runs as written."""

import pathlib
import re


def test_readme_python_example_runs():
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    metrics = namespace["metrics"]
    assert metrics["loss"].shape == (4,)
    assert metrics["num_steps"].tolist() == [3, 3, 3, 3]
