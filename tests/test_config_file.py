"""Run configs as TOML / YAML files; the run directory's config.toml repeats the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from robench.cli import main
from robench.config import make_config
from robench.config_file import config_to_toml, read_config_file
from robench.errors import ConfigError

from conftest import TINY

TOML = """
datasets = ["shapes"]
distortions = "gaussian_noise"
methods = ["none", "finetune"]
seeds = [0]
severities = [1, 5]
steps = 3
batch-size = 32
max_train = 160
max_test = 80
pretrain_epochs = 1
embed_dim = 64
depth = 2
num_heads = 2
device = "cpu"
quiet = true
"""


def test_toml_and_yaml_read_to_the_same_config(tmp_path: Path) -> None:
    (tmp_path / "grid.toml").write_text(TOML)
    yaml_text = "\n".join(line.replace(" = ", ": ") for line in TOML.strip().splitlines())
    (tmp_path / "grid.yaml").write_text(yaml_text)
    from_toml = make_config(**read_config_file(tmp_path / "grid.toml"))
    from_yaml = make_config(**read_config_file(tmp_path / "grid.yaml"))
    assert from_toml == from_yaml
    assert from_toml.batch_size == 32 and from_toml.methods == ("none", "finetune") and from_toml.backbone == TINY


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = make_config(**read_config_file(_write(tmp_path, TOML)), out=tmp_path / "run", label_fraction=0.5)
    written = tmp_path / "config.toml"
    written.write_text(config_to_toml(config))
    assert make_config(**read_config_file(written)) == config
    hub = make_config(backbone="vit_small_patch16_224", img_size=32, out=tmp_path / "x")
    assert hub.backbone.model == "vit_small_patch16_224" and hub.backbone.img_size == 32
    assert hub.backbone.embed_dim is None  # a named model keeps timm's own width
    written.write_text(config_to_toml(hub))
    assert make_config(**read_config_file(written)).backbone == hub.backbone


def test_run_directory_config_repeats_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = _write(tmp_path, TOML + f'out = "{tmp_path / "run"}"\n')
    assert main(["run", "--config", str(grid)]) == 0
    assert "(2 cells computed" in capsys.readouterr().out
    saved = tmp_path / "run" / "config.toml"
    assert saved.is_file()
    assert main(["run", "--config", str(saved)]) == 0
    assert "(0 cells computed, 2 reused, 0 failed)" in capsys.readouterr().out
    # flags override the file: one more seed grows the same directory
    assert main(["run", "--config", str(saved), "--seeds", "0,1", "-q"]) == 0
    assert "(2 cells computed, 2 reused" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("seeds = [0\n", ".toml", "cannot parse config file"),
        ("seeds: [0\n", ".yaml", "cannot parse config file"),
        ("label_fractoin = 0.5\n", ".toml", "unknown config key 'label_fractoin'"),
        ("- a\n- b\n", ".yaml", "must hold a table of options, not list"),
    ],
)
def test_malformed_config_files(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = tmp_path / f"grid{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        read_config_file(path)
    assert "\n" not in str(err.value)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path
