"""A real third-party package, pip-installed, is found through the entry-point group ``robench``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import fast_run_argv

PACKAGE = Path(__file__).parent / "example_plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a robench process that sees the example package, pip-installed into its
    own target directory (the test environment itself stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PACKAGE)],
        check=True, capture_output=True, text=True, timeout=300, cwd=build,
    )
    assert (target / "robench_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), env.get("PYTHONPATH")]))
    return env


def robench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("robench")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=600)


def test_list_shows_the_package_and_its_version(plugin_env: dict[str, str]) -> None:
    result = robench(plugin_env, "list")
    assert result.returncode == 0, result.stderr
    for name in ("example_stripes", "example_invert", "example_norm_tune"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(name))
        assert "package robench-example-plugin 0.1.0" in line
    assert "built-in" in result.stdout


def test_run_on_the_plugins_own_dataset_distortion_and_method(plugin_env: dict[str, str], tmp_path: Path) -> None:
    argv = fast_run_argv(tmp_path / "run", datasets="example_stripes", distortions="example_invert",
                         methods="none,example_norm_tune", seeds="0", severities="2,5")
    result = robench(plugin_env, *argv)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "run" / "leaderboards" / "example_stripes.csv")
    assert set(table["method"]) == {"none", "example_norm_tune"}
    assert set(table["distortion"]) == {"example_invert"} and set(table["group"]) == {"digital"}
    tuned = table[table["method"] == "example_norm_tune"]
    assert tuned["uses_labels"].all() and not tuned["uses_clean_images"].any()


def test_without_the_package_its_names_are_unknown(tmp_path: Path) -> None:
    result = robench(dict(os.environ), *fast_run_argv(tmp_path / "run", datasets="example_stripes"))
    assert result.returncode == 2 and "unknown dataset 'example_stripes'" in result.stderr
