"""End-to-end runs through the Python API: leaderboard, resume, determinism, incompatible dirs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import robench
from robench.config import make_config
from robench.errors import ConfigError
from robench.leaderboard import COLUMNS
from robench.runner import execute

from conftest import fast_run_options


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("run") / "out"
    return out, robench.run(**fast_run_options(out))


def test_leaderboard_rows_and_columns(first_run) -> None:
    out, table = first_run
    assert list(table.columns) == COLUMNS
    # 2 methods x 2 metrics x (clean, 1, 5, mean)
    assert len(table) == 2 * 2 * 4
    assert set(table["severity"]) == {"clean", "1", "5", "mean"}
    assert (table["n_seeds"] == 2).all()
    assert table["mean"].between(0, 1).all() and table["std"].notna().all()
    finetune = table[table["method"] == "finetune"].iloc[0]
    none = table[table["method"] == "none"].iloc[0]
    assert bool(finetune["uses_labels"]) and not bool(none["uses_labels"])
    assert finetune["group"] == "noise" and finetune["label_fraction"] == pytest.approx(0.1)
    on_disk = pd.read_csv(out / "leaderboards" / "shapes.csv")
    assert list(on_disk.columns) == COLUMNS and len(on_disk) == len(table)


def test_mean_row_is_the_mean_over_severities(first_run) -> None:
    out, table = first_run
    seeds = []
    for path in sorted((out / "cells" / "shapes" / "gaussian_noise" / "none").glob("seed-*.json")):
        accuracy = json.loads(path.read_text())["accuracy"]["linear"]
        seeds.append((accuracy["1"] + accuracy["5"]) / 2)
    row = table[(table["method"] == "none") & (table["metric"] == "linear") & (table["severity"] == "mean")]
    assert row["mean"].item() == pytest.approx(sum(seeds) / 2)


def test_cell_records_carry_provenance(first_run) -> None:
    out, _ = first_run
    record = json.loads((out / "cells" / "shapes" / "gaussian_noise" / "finetune" / "seed-0.json").read_text())
    assert record["environment"]["robench"] == robench.__version__
    assert record["environment"]["torch"] and record["environment"]["device"].startswith("cpu")
    assert record["method"]["origin"] == "built-in" and record["method"]["details"]["steps"] == 3
    assert record["method"]["details"]["options"]["lr"] > 0
    assert record["distortion"]["details"] == {"group": "noise", "table": "cifar-10-c"}
    assert record["dataset"]["details"]["num_labelled"] == 16
    assert len(record["predictions"]["linear"]["5"]) == len(record["test_labels"]) == 80
    assert [h["step"] for h in record["history"]] == [3]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["label_fraction"] == 0.1 and manifest["grid"]["seeds"] == [0, 1]


def test_rerun_skips_finished_cells_and_recomputes_broken_ones(first_run) -> None:
    out, table = first_run
    csv = (out / "leaderboards" / "shapes.csv").read_bytes()
    again = execute(make_config(**fast_run_options(out)))
    assert (again.computed, again.reused) == (0, 4)
    assert (out / "leaderboards" / "shapes.csv").read_bytes() == csv
    broken = out / "cells" / "shapes" / "gaussian_noise" / "none" / "seed-1.json"
    broken.write_text(broken.read_text()[:100])  # a torn file, as after a crash of another tool
    repaired = execute(make_config(**fast_run_options(out)))
    assert (repaired.computed, repaired.reused) == (1, 3)
    assert (out / "leaderboards" / "shapes.csv").read_bytes() == csv


def test_grid_can_grow_in_the_same_directory(first_run) -> None:
    out, _ = first_run
    grown = execute(make_config(**fast_run_options(out, seeds="0,1,2")))
    assert (grown.computed, grown.reused) == (2, 4)
    assert (grown.leaderboard["n_seeds"] == 3).all()


def test_same_command_twice_gives_identical_csv(tmp_path: Path) -> None:
    # each run pretrains its own backbone in its own cache, so pretraining is covered too
    for name in ("a", "b"):
        torch.manual_seed(len(name) * 1000 + ord(name))  # global RNG state must not matter
        robench.run(**fast_run_options(tmp_path / name, cache_dir=tmp_path / f"cache-{name}"))
    assert (tmp_path / "a" / "leaderboards" / "shapes.csv").read_bytes() == \
        (tmp_path / "b" / "leaderboards" / "shapes.csv").read_bytes()
    weights = [next((tmp_path / f"cache-{n}" / "pretrain").glob("*.safetensors")).read_bytes() for n in "ab"]
    assert weights[0] == weights[1]


def test_directory_from_other_settings_is_refused(first_run) -> None:
    out, _ = first_run
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ConfigError, match="was made with other settings .*label_fraction: 0.1 there vs 0.5 now"):
        robench.run(**fast_run_options(out, label_fraction=0.5))
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
