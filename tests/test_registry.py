"""Plugin discovery: built-ins, --plugin files and modules, ROBENCH_PLUGINS, clashes, bad plugins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from robench.errors import ConfigError, PluginError
from robench.registry import BUILTIN_PLUGINS, Registry

PLUGIN_SOURCE = '''
from robench.api import Distortion, hookimpl

class {cls}(Distortion):
    """{doc}"""
    name = "{name}"
    group = "{group}"

    def apply(self, images, severity, rng):
        return images

@hookimpl
def robench_distortions():
    return [{cls}]
'''


def write_plugin(tmp_path: Path, filename: str, name: str, group: str = "other", cls: str = "Thing") -> Path:
    path = tmp_path / filename
    path.write_text(PLUGIN_SOURCE.format(cls=cls, name=name, group=group, doc=f"A test {name}."))
    return path


def test_builtins_register_through_the_hooks() -> None:
    registry = Registry(entry_points=False)
    assert {"gaussian_noise", "gaussian_blur"} <= set(registry.names("distortion"))
    assert {"none", "finetune"} <= set(registry.names("method"))
    assert {"digits", "shapes"} <= set(registry.names("dataset"))
    assert all(i.origin == "built-in" for i in registry.entries("method"))
    assert registry.names("distortions", "gaussian_*") == ["gaussian_blur", "gaussian_noise"]
    assert len(BUILTIN_PLUGINS) == len(set(BUILTIN_PLUGINS))


def test_unknown_name_suggests_the_closest() -> None:
    registry = Registry(entry_points=False)
    with pytest.raises(ConfigError) as err:
        registry.info("distortion", "gausian_noise", "--distortions")
    message = str(err.value)
    assert "unknown distortion 'gausian_noise' (from --distortions)" in message
    assert "Did you mean 'gaussian_noise'?" in message
    assert "gaussian_blur" in message and "\n" not in message


def test_plugin_file_and_environment(tmp_path: Path) -> None:
    a = write_plugin(tmp_path, "plug_a.py", "test_alpha", group="weird")
    b = write_plugin(tmp_path, "plug_b.py", "test_beta", group="weird")
    registry = Registry([str(a)], entry_points=False, environ={"ROBENCH_PLUGINS": str(b)})
    assert registry.info("distortion", "test_alpha").origin == f"--plugin {a}"
    assert registry.info("distortion", "test_beta").origin == f"ROBENCH_PLUGINS {b}"
    assert registry.resolve_distortions(["weird"]) == ["test_alpha", "test_beta"]
    assert registry.info("distortion", "test_alpha").description == "A test test_alpha."


def test_plugin_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(tmp_path, "my_robench_module.py", "test_gamma")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry(["my_robench_module"], entry_points=False)
    assert registry.info("distortion", "test_gamma").origin == "--plugin my_robench_module"


def test_name_clash_names_both_sources(tmp_path: Path) -> None:
    clash = write_plugin(tmp_path, "clash.py", "gaussian_noise")
    with pytest.raises(PluginError) as err:
        Registry([str(clash)], entry_points=False)
    message = str(err.value)
    assert "distortion 'gaussian_noise' is registered twice" in message
    assert "built-in (robench_plugins.distortions.noise.GaussianNoise)" in message
    assert f"--plugin {clash}" in message


def test_resolve_distortions_names_groups_all() -> None:
    registry = Registry(entry_points=False)
    assert registry.resolve_distortions(["noise"]) == ["gaussian_noise", "impulse_noise", "shot_noise",
                                                       "speckle_noise"]
    assert registry.resolve_distortions(["all"]) == registry.names("distortion")
    assert len(registry.names("distortion")) == 22
    assert registry.resolve_distortions(["gaussian_blur", "all"])[0] == "gaussian_blur"
    assert registry.resolve_distortions(["paper", "occlusion"]) == ["low_resolution", "occlusion", "salt_and_pepper"]
    with pytest.raises(ConfigError, match="unknown distortion 'rain'.*Choose from: .*all.*blur"):
        registry.resolve_distortions(["rain"])


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("raise RuntimeError('boom')", "cannot import plugin .*boom"),
        ("from robench.api import hookimpl\n@hookimpl\ndef robench_methods():\n    return 3",
         "robench_methods .* returned int; it must return a list of classes"),
        ("from robench.api import hookimpl\n@hookimpl\ndef robench_methods():\n    return [int]",
         "expected a subclass of robench.api.Method"),
        ("from robench.api import hookimpl\n@hookimpl\ndef robench_metrics():\n    return []",
         "unknown hook"),
        (textwrap.dedent(PLUGIN_SOURCE.format(cls="Bad", name="Bad Name", group="x", doc="d")),
         "has name 'Bad Name'; a name must be lowercase snake case"),
    ],
)
def test_broken_plugins_raise_one_clear_error(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(PluginError, match=message):
        Registry([str(path)], entry_points=False)


def test_missing_plugin_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'no_such_module_xyz' .* neither an existing path nor an importable module"):
        Registry(["no_such_module_xyz"], entry_points=False)
    with pytest.raises(ConfigError, match="missing.py' \\(from --plugin\\) does not exist"):
        Registry([str(tmp_path / "missing.py")], entry_points=False)
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ConfigError, match="is not a .py file or a package directory"):
        Registry([str(tmp_path / "notes.txt")], entry_points=False)
