"""robench leaderboard / compare / plot on a real (tiny) run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robench.cli import main
from robench.leaderboard import COLUMNS, read_csv

from conftest import fast_run_argv


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "run"
    assert main(fast_run_argv(out, distortions="gaussian_noise,gaussian_blur")) == 0
    return out


def test_run_writes_leaderboard_and_summary(run_dir: Path) -> None:
    table = read_csv(run_dir / "leaderboards" / "shapes.csv")
    summary = pd.read_csv(run_dir / "leaderboards" / "shapes-summary.csv")
    assert list(table.columns) == COLUMNS
    assert set(summary["method"]) == {"none", "finetune"} and (summary["reference"] == "none").all()
    assert summary["critical_difference"].notna().all()


def test_leaderboard_rebuilds_without_training(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = run_dir / "leaderboards" / "shapes.csv"
    before = csv.read_bytes()
    csv.unlink()
    assert main(["leaderboard", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "shapes summary (linear)" in out and "Friedman p" in out
    assert csv.read_bytes() == before
    assert main(["leaderboard", str(run_dir), "--format", "markdown", "--metric", "knn"]) == 0
    assert "| distortion" in capsys.readouterr().out
    assert main(["leaderboard", str(run_dir), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == ",".join(COLUMNS)


def test_leaderboard_reference_and_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(run_dir), "--reference", "finetune", "--format", "csv"]) == 0
    capsys.readouterr()
    table = read_csv(run_dir / "leaderboards" / "shapes.csv")
    assert (table[table["method"] == "finetune"]["delta_vs_reference"] == 0).all()
    assert main(["leaderboard", str(run_dir), "--reference", "asym_kd"]) == 2
    assert "reference method 'asym_kd' (from --reference) has no results" in capsys.readouterr().err
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not a robench run directory" in err and err.count("\n") == 1
    main(["leaderboard", str(run_dir)])  # restore the default reference for the other tests
    capsys.readouterr()


def test_compare_side_by_side_and_without_overlap(run_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    csv = run_dir / "leaderboards" / "shapes.csv"
    assert main(["compare", str(run_dir), str(csv), "--format", "csv"]) == 0
    joined = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert len(joined) == len(read_csv(csv)) // 2  # linear rows only
    assert (joined["delta"] == 0).all() and not joined["beyond_ci"].any()
    other = read_csv(csv).assign(method=lambda t: t["method"] + "_v2")
    other.to_csv(tmp_path / "other.csv", index=False)
    assert main(["compare", str(csv), str(tmp_path / "other.csv")]) == 2
    err = capsys.readouterr().err
    assert "share no (dataset, distortion, severity, method, metric) row" in err and "finetune_v2" in err
    assert main(["compare", str(csv), str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_writes_non_blank_pngs(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    assert main(["plot", str(run_dir)]) == 0
    written = [Path(line.split("wrote ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    assert [p.name for p in written] == ["shapes-linear-severity.png", "shapes-linear-heatmap.png",
                                        "shapes-linear-cd.png"]
    for path in written:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert min(pixels.shape) > 150 and pixels.std() > 10, path
