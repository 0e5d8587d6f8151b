"""The ray and slurm (submitit) executors produce the local executor's leaderboard."""

from __future__ import annotations

from pathlib import Path

import pytest

import robench

from conftest import fast_run_options

GRID = dict(seeds="0", methods="none,finetune", distortions="gaussian_noise")  # 2 cells


@pytest.fixture(scope="module")
def local_csv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("local") / "run"
    robench.run(**fast_run_options(out, **GRID))
    return (out / "leaderboards" / "shapes.csv").read_bytes()


def test_ray_executor_on_a_local_ray_cluster(local_csv: bytes, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        robench.run(**fast_run_options(tmp_path / "run", executor="ray", **GRID))
    finally:
        ray.shutdown()
    assert (tmp_path / "run" / "leaderboards" / "shapes.csv").read_bytes() == local_csv


def test_slurm_executor_through_submitits_local_executor(local_csv: bytes, tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    robench.run(**fast_run_options(tmp_path / "run", executor="slurm", slurm_local=True, **GRID))
    assert (tmp_path / "run" / "leaderboards" / "shapes.csv").read_bytes() == local_csv
    assert list((tmp_path / "run" / "slurm").rglob("*_log.out"))  # submitit's job logs


def test_slurm_without_sbatch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    with pytest.raises(robench.ConfigError, match="found no sbatch on this machine; run on a SLURM login node"):
        robench.run(**fast_run_options(tmp_path / "run", executor="slurm", **GRID))
    assert not (tmp_path / "run").exists()  # refused before anything was written
