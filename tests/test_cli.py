"""The command line: listing, a real run, and one clear line for every bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from robench.cli import main

from conftest import fast_run_argv


def test_list_shows_name_origin_description(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "distortions"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("gaussian_noise "))
    assert line.split()[1:4] == ["noise", "built-in", "Additive"]
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "datasets:" in out and "methods:" in out and "finetune" in out and "digits" in out


def test_run_prints_the_leaderboard_and_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(fast_run_argv(out, seeds="0", methods="none")) == 0
    printed = capsys.readouterr().out
    assert "shapes (linear probe accuracy %, mean ± std over seeds; label fraction 0.1; * significantly" in printed
    assert "shapes summary (linear)" in printed and "summary: " in printed
    row = next(line for line in printed.splitlines() if line.startswith("gaussian_noise"))
    assert row.split()[:4] == ["gaussian_noise", "none", "no", "no"]
    assert f"leaderboard: {out / 'leaderboards' / 'shapes.csv'}" in printed
    assert "(1 cells computed, 0 reused, 0 failed)" in printed


BAD_INPUTS = [
    (dict(datasets="digitz"), "unknown dataset 'digitz' (from --datasets). Did you mean 'digits'? Choose from: cifar10, "),
    (dict(methods="finetun"), "unknown method 'finetun' (from --methods). Did you mean 'finetune'?"),
    (dict(distortions="gaussian_nois"), "unknown distortion 'gaussian_nois' (from --distortions). Did you mean 'gaussian_noise'?"),
    (dict(methods="none,,finetune"), "--methods needs a comma-separated list of names"),
    (dict(methods="finetune:lrr=1"), "unknown option of method 'finetune' 'lrr' (from --methods). Did you mean 'lr'?"),
    (dict(severities="7"), "severity 7 (from --severities) is not offered by distortion 'gaussian_noise'; valid: 1, 2, 3, 4, 5"),
    (dict(severities="0"), "severity 0 (from --severities) is not offered"),
    (dict(severities="x"), "--severities must be an integer, got 'x'"),
    (dict(weights="missing.pth"), "weights file '{tmp}/missing.pth' (from --weights) does not exist"),
    (dict(label_fraction="0"), "--label-fraction must be in (0, 1], got '0'"),
    (dict(label_fraction="1.5"), "--label-fraction must be in (0, 1], got '1.5'"),
    (dict(label_fraction="half"), "--label-fraction must be a number in (0, 1], got 'half'"),
    (dict(seeds="-1"), "--seeds must be at least 0, got -1"),
    (dict(steps="0"), "--steps must be at least 1, got 0"),
    (dict(batch_size="2.5"), "--batch-size must be an integer, got '2.5'"),
    (dict(backbone="vit_tiny"), "unknown backbone 'vit_tiny' (from --backbone)"),
    (dict(embed_dim="63"), "width 63 is not divisible by the number of heads 2"),
    (dict(device="tpu"), "unknown device 'tpu' (from --device); valid: auto, cpu, cuda, cuda:N"),
    (dict(device="mps"), "device 'mps' (from --device) is not supported; valid: auto, cpu, cuda, cuda:N"),
    (dict(device="cuda:7"), "device 'cuda:7' (from --device)"),
    (dict(plugin="{tmp}/nope.py"), "plugin file '{tmp}/nope.py' (from --plugin) does not exist"),
]


def _make_foreign_run_dir(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / "manifest.json").write_text('{"settings": {"label_fraction": 0.9}, "grid": {}}')


def _write_config(text: str):
    def setup(tmp: Path) -> None:
        (tmp / "grid.toml").write_text(text)
    return setup


# (options changed from the fast run, extra argv, setup of the directory, expected message)
MORE_BAD_INPUTS = [
    (dict(datasets=""), [], None, "--datasets needs a comma-separated list of names"),
    (dict(steps=None, epochs="-1"), [], None, "--epochs must be at least 1, got -1"),
    (dict(), ["--config", "{tmp}/grid.toml"], _write_config("seeds = [0\n"), "cannot parse config file"),
    (dict(), ["--config", "{tmp}/grid.toml"], _write_config("sedes = [0]\n"),
     "unknown config key 'sedes' (from {tmp}/grid.toml). Did you mean 'seeds'?"),
    (dict(), ["--config", "{tmp}/missing.toml"], None, "config file '{tmp}/missing.toml' (from --config) does not exist"),
    (dict(), ["--out", "/proc/robench-no-such-dir/run"], None, "(from --out) is not writable"),
    (dict(), [], _make_foreign_run_dir, "was made with other settings (label_fraction: 0.9 there vs 0.1 now"),
    (dict(executor="spark"), [], None, "unknown executor 'spark' (from --executor). Choose from: local, ray, slurm"),
    (dict(gpus_per_cell="-1"), [], None, "--gpus-per-cell must be at least 0, got '-1'"),
    (dict(reference="asym_kd"), [], None, "reference method 'asym_kd' (from --reference) is not among the methods"),
]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


def _check_one_line_exit_2(argv: list[str], tmp: Path, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree(tmp)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robench: error: ")
    assert message.replace("{tmp}", str(tmp)) in lines[0]
    assert _tree(tmp) == before  # nothing written, nothing changed


@pytest.mark.parametrize(("change", "message"), BAD_INPUTS, ids=[m[:40] for _, m in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, message: str
) -> None:
    out = tmp_path / "run"
    change = {k: v.replace("{tmp}", str(tmp_path)) for k, v in change.items()}
    argv = fast_run_argv(out, **{k: v for k, v in change.items() if k != "plugin"})
    if "plugin" in change:
        argv += ["--plugin", change["plugin"]]
    if "weights" in change:  # relative to the test's directory
        argv[argv.index("--weights") + 1] = str(tmp_path / change["weights"])
    _check_one_line_exit_2(argv, tmp_path, message, capsys)


@pytest.mark.parametrize(("change", "extra", "setup", "message"), MORE_BAD_INPUTS,
                         ids=[m[:40] for *_, m in MORE_BAD_INPUTS])
def test_more_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, extra: list[str],
                        setup, message: str) -> None:
    if setup is not None:
        setup(tmp_path)
    argv = fast_run_argv(tmp_path / "run", **change) + [a.replace("{tmp}", str(tmp_path)) for a in extra]
    _check_one_line_exit_2(argv, tmp_path, message, capsys)


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--epochs", "3", "--steps", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not allowed with argument" in err[0]
    with pytest.raises(SystemExit):
        main(["run", "--no-such-flag"])
    assert capsys.readouterr().err.count("\n") == 1


def test_console_script_reports_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("robench")
    result = subprocess.run([str(exe), "run", "--datasets", "nope", "--out", str(tmp_path / "x")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "unknown dataset 'nope'" in result.stderr and not (tmp_path / "x").exists()


def test_show_distortions_writes_a_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["show-distortions", "--distortions", "noise,occlusion", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as image:
        # label column + clean + 5 severities, header + one row per distortion (4 noise + occlusion)
        assert image.size == (150 + 6 * 96, 22 + 5 * 96)
    assert main(["show-distortions", "--index", "100000", "--out", str(tmp_path / "no.png")]) == 2
    assert "out of range" in capsys.readouterr().err and not (tmp_path / "no.png").exists()
    assert main(["show-distortions", "--distortions", "fogg", "--out", str(tmp_path / "no.png")]) == 2
    assert "Did you mean 'fog'?" in capsys.readouterr().err


def test_severity_table_is_recorded_and_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "run"
    assert main(fast_run_argv(out, seeds="0", methods="none", severity_table="imagenet-c")) == 0
    record = json.loads(next((out / "cells").rglob("*.json")).read_text())
    assert record["distortion"]["details"]["table"] == "imagenet-c"
    capsys.readouterr()
    assert main(fast_run_argv(tmp_path / "bad", severity_table="imagenet")) == 2
    assert "--severity-table got 'imagenet'; valid: auto, imagenet-c, cifar-10-c" in capsys.readouterr().err
