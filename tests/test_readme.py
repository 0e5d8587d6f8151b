"""The README's commands are the ones CI runs, and its plugin example works."""

from __future__ import annotations

import re
from pathlib import Path

from robench.api import Distortion, Method
from robench.rng import BatchRNG, sample_seeds

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    ci_command = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command.endswith("&& pytest")
    assert ci_command in [block.strip() for block in bash_blocks()]


def test_readme_install_and_run_command() -> None:
    assert "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && robench run" in bash_blocks()[0]


def test_readme_plugin_example_defines_working_plugins() -> None:
    import torch

    source = re.search(r"```python\n# robench_invert.py\n(.*?)```", README, flags=re.S).group(1)
    namespace: dict = {}
    exec(compile(source, "README.md", "exec"), namespace)
    invert, head_only = namespace["Invert"], namespace["HeadOnly"]
    assert issubclass(invert, Distortion) and issubclass(head_only, Method)
    images = torch.rand(2, 3, 8, 8)
    out = invert()(images, 5, BatchRNG(sample_seeds(0, torch.arange(2))))
    torch.testing.assert_close(out, 0.5 * images + 0.5 * (1 - images))
    assert [cls.name for cls in namespace["robench_methods"]()] == ["head_only"]


def test_readme_plugin_example_runs_as_a_plugin_file(tmp_path: Path) -> None:
    import robench

    from conftest import fast_run_options

    source = re.search(r"```python\n(# robench_invert.py\n.*?)```", README, flags=re.S).group(1)
    plugin = tmp_path / "robench_invert.py"
    plugin.write_text(source)
    table = robench.run(**fast_run_options(tmp_path / "run", plugins=str(plugin), distortions="invert",
                                           methods="head_only", seeds="0"))
    assert set(table["method"]) == {"head_only"} and set(table["group"]) == {"digital"}
    assert table["uses_labels"].all()
