"""The ``robench`` command line: parse, call the library, print.

Every user error is one line on stderr (``robench: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from robench.errors import RobenchError

_KINDS = ("datasets", "distortions", "methods", "executors")
# the kind-specific column of `robench list`: header and value
_LIST_COLUMN = {
    "distortions": ("group", lambda cls: cls.group),
    "methods": ("presets", lambda cls: ", ".join(cls.presets)),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"robench: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``robench`` and its subcommands."""
    from robench import __version__
    from robench.config import DEFAULT_EPOCHS, RunConfig

    d = RunConfig()
    parser = _Parser(prog="robench", description="Benchmark distortion-robust ViT adaptation methods.")
    parser.add_argument("--version", action="version", version=f"robench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="adapt and evaluate every cell of a grid; write leaderboards",
                         description="Run datasets x distortions x methods x seeds; resumable.")
    grid = run.add_argument_group("grid")
    grid.add_argument("--datasets", help=f"comma-separated dataset names (default: {','.join(d.datasets)})")
    grid.add_argument("--distortions", help=f"distortion names, group names or 'all' (default: {','.join(d.distortions)})")
    grid.add_argument("--methods", help=f"comma-separated method names (default: {','.join(d.methods)})")
    grid.add_argument("--seeds", help=f"comma-separated non-negative seeds (default: {','.join(map(str, d.seeds))})")
    grid.add_argument("--severities", help="severities to evaluate (default: every severity of each distortion)")
    grid.add_argument("--severity-table", help="corruption parameters: auto (ImageNet-C from 96 px, "
                      "CIFAR-10-C below), imagenet-c or cifar-10-c (default: auto)")
    budget = run.add_argument_group("budget")
    budget.add_argument("--label-fraction", help=f"labelled fraction of the train split, in (0, 1] (default: {d.label_fraction})")
    steps = budget.add_mutually_exclusive_group()
    steps.add_argument("--epochs", help=f"training budget in passes over the train split (default: {DEFAULT_EPOCHS})")
    steps.add_argument("--steps", help="training budget in optimiser steps (instead of --epochs)")
    budget.add_argument("--batch-size", help=f"training batch size (default: {d.batch_size})")
    budget.add_argument("--max-train", help="use a stratified subset of this many train images")
    budget.add_argument("--max-test", help="use a stratified subset of this many test images")
    model = run.add_argument_group("backbone")
    b = d.backbone
    model.add_argument("--backbone", help=f"timm ViT name; a named model keeps timm's sizes unless overridden "
                       f"(default: {b.model} at img {b.img_size}, patch {b.patch_size}, width {b.embed_dim}, "
                       f"depth {b.depth}, {b.num_heads} heads)")
    model.add_argument("--img-size", help=f"input size override (default: {b.img_size})")
    model.add_argument("--patch-size", help=f"patch size override (default: {b.patch_size})")
    model.add_argument("--embed-dim", help=f"width override (default: {b.embed_dim})")
    model.add_argument("--depth", help=f"depth override (default: {b.depth})")
    model.add_argument("--heads", dest="num_heads", help=f"attention heads override (default: {b.num_heads})")
    model.add_argument("--weights", help="starting checkpoint: a .safetensors/.pt/.pth file, or timm:<model.tag> "
                       "(fetched from the hub); default: robench's clean pretraining, cached")
    model.add_argument("--pretrain", help="robench's clean pretraining when no weights are given: supervised "
                       "or dino (default: supervised)")
    model.add_argument("--pretrain-epochs", help=f"epochs of the clean pretraining (default: {d.pretrain_epochs})")
    where = run.add_argument_group("where")
    where.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    where.add_argument("--out", help=f"run directory; re-running resumes it (default: {d.out})")
    where.add_argument("--cache-dir", help="cache of pretrained backbones (default: $ROBENCH_CACHE or ~/.cache/robench)")
    where.add_argument("--data-root", help="where datasets that read files look for them")
    where.add_argument("--download", action="store_true", default=None,
                       help="let dataset plugins fetch missing files (torchvision's download)")
    run.add_argument("--reference", help="method the leaderboard compares every row with (default: none)")
    control = run.add_argument_group("control")
    control.add_argument("--config", help="TOML or YAML file of options (keys as the flags); flags override it")
    control.add_argument("--dry-run", action="store_true", help="print the grid and its size; run nothing")
    control.add_argument("--retry-failed", action="store_true", help="recompute cells recorded as failed")
    control.add_argument("--compile", action="store_true", default=None,
                         help="torch.compile the methods' forward passes (eager where compilation fails)")
    control.add_argument("--no-shared-teacher", dest="share_teacher", action="store_false", default=None,
                         help="train each distortion's asym_kd student apart (default: one teacher pass "
                              "feeds the students of all distortions of a seed)")
    cluster = run.add_argument_group("executor")
    cluster.add_argument("--executor", help="where cells run: local, ray, slurm, or a plugin's (default: local)")
    cluster.add_argument("--ray-address", help="Ray cluster address (default: the running Ray, else a local one)")
    cluster.add_argument("--gpus-per-cell", help="GPUs per cell for ray and slurm (default: 0)")
    cluster.add_argument("--cpus-per-cell", help="CPUs per cell for ray and slurm (default: 1)")
    cluster.add_argument("--slurm-partition", help="SLURM partition")
    cluster.add_argument("--slurm-timeout-min", help="SLURM time limit per cell, minutes (default: 60)")
    cluster.add_argument("--slurm-local", action="store_true", default=None,
                         help="run the SLURM jobs as local subprocesses (submitit's local executor)")
    _add_common(run)

    state = sub.add_parser("status", help="show done, failed, running and pending cells of a run directory",
                           description="Progress of a run directory against its grid.")
    state.add_argument("run_dir", metavar="RUN_DIR")
    _add_common(state)

    board = sub.add_parser("leaderboard", help="rebuild and show the leaderboards of a run directory",
                           description="Rebuild leaderboards and summaries from stored cells (no training).")
    board.add_argument("run_dir", metavar="RUN_DIR")
    _add_report_options(board)
    board.add_argument("--reference", default="none", help="reference method (default: none)")
    _add_common(board)

    comparison = sub.add_parser("compare", help="compare two leaderboards side by side",
                                description="Join two leaderboards (CSV files or run directories) on their keys.")
    comparison.add_argument("a", metavar="A")
    comparison.add_argument("b", metavar="B")
    _add_report_options(comparison)
    _add_common(comparison)

    plot = sub.add_parser("plot", help="write PNG figures of a run directory's leaderboards",
                          description="Accuracy by severity, method x distortion heat map, CD diagram.")
    plot.add_argument("run_dir", metavar="RUN_DIR")
    plot.add_argument("--metric", default="linear", help="linear or knn (default: linear)")
    plot.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots)")
    _add_common(plot)

    show = sub.add_parser("show-distortions", help="write a PNG grid of every distortion at every severity",
                          description="One row per distortion, one column per severity, on a real test image.")
    show.add_argument("--dataset", default="digits", help="dataset whose test image to use (default: digits)")
    show.add_argument("--distortions", default="all", help="names, groups or 'all' (default: all)")
    show.add_argument("--index", default="0", help="index of the test image (default: 0)")
    show.add_argument("--seed", default="0", help="seed of the random distortions (default: 0)")
    show.add_argument("--severity-table", default="auto", help="auto, imagenet-c or cifar-10-c (default: auto)")
    show.add_argument("--data-root", help="where datasets that read files look for them")
    show.add_argument("--out", default="distortions.png", help="PNG file to write (default: distortions.png)")
    _add_common(show)

    lister = sub.add_parser("list", help="list registered datasets, distortions or methods",
                            description="List plugins with their origin and a description.")
    lister.add_argument("kind", nargs="?", choices=_KINDS, help="what to list (default: all three)")
    _add_common(lister)
    return parser


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                        help="output format (default: table)")
    parser.add_argument("--metric", default="linear", help="linear or knn (default: linear)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", dest="plugins", metavar="PATH_OR_MODULE",
                        help="load a plugin module or .py file (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", default=None, help="no progress bars or info logs")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robench`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "show-distortions":
            return _show_distortions(args)
        if args.command == "status":
            return _status(args)
        if args.command == "leaderboard":
            return _leaderboard(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "plot":
            return _plot(args)
        return _list(args)
    except RobenchError as exc:
        print(f"robench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robench: interrupted; finished cells are saved, re-run the command to resume",
              file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from robench.config import make_config
    from robench.config_file import read_config_file
    from robench.runner import describe, execute

    actions = {"command", "config", "dry_run", "retry_failed"}
    options = read_config_file(Path(args.config).expanduser()) if args.config else {}
    options.update({k: v for k, v in vars(args).items() if k not in actions and v is not None})
    config = make_config(**options)
    if args.dry_run:
        print(describe(config))
        return 0
    with logging_redirect_tqdm():
        outcome = execute(config, retry_failed=args.retry_failed)
    if not outcome.leaderboard.empty:
        _print_outcome(outcome, "linear", "simple")
    print(f"run directory: {outcome.run_dir} ({outcome.computed} cells computed, "
          f"{outcome.reused} reused, {len(outcome.failed)} failed)")
    if outcome.failed:
        for key, error in sorted(outcome.failed.items()):
            print(f"failed: {key}: {error}")
        print("failure records (reason and traceback) are next to the cells as seed-N.failed.json; "
              "rerun with --retry-failed to compute them again")
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    from robench.runner import status

    states = status(Path(args.run_dir))
    total = sum(len(v) for v in states.values())
    print(f"{args.run_dir}: {total} cells: " + ", ".join(f"{len(v)} {k}" for k, v in states.items()))
    for state in ("failed", "running"):
        for key, error in states[state]:
            print(f"{state}: {key}" + (f": {error}" if error else ""))
    return 0


def _print_outcome(outcome, metric: str, tablefmt: str) -> None:
    from robench.leaderboard import format_overview, format_summary

    print(format_summary(outcome.leaderboard, metric, tablefmt))
    print()
    print(format_overview(outcome.summary, metric, tablefmt))
    print()
    for name, path in outcome.csv_paths.items():
        print(f"{'summary' if name.endswith(' summary') else 'leaderboard'}: {path}")


def _leaderboard(args: argparse.Namespace) -> int:
    from robench.runner import rebuild_leaderboards

    outcome = rebuild_leaderboards(Path(args.run_dir), args.reference)
    if args.format == "csv":
        print(outcome.leaderboard.to_csv(index=False, float_format="%.6f"), end="")
        return 0
    _print_outcome(outcome, args.metric, "github" if args.format == "markdown" else "simple")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from robench.compare import compare, load_leaderboard

    table = compare(load_leaderboard(Path(args.a), "A"), load_leaderboard(Path(args.b), "B"), args.metric)
    if args.format == "csv":
        print(table.to_csv(index=False, float_format="%.6f"), end="")
        return 0
    shown = table.assign(**{c: (100 * table[c]).round(2) for c in table.columns if c.startswith(("mean", "ci95", "delta"))})
    print(tabulate(shown, headers="keys", tablefmt="github" if args.format == "markdown" else "simple",
                   showindex=False, disable_numparse=True))
    print(f"\n{int(table['beyond_ci'].sum())} of {len(table)} rows differ beyond both 95% intervals (delta = B - A, %)")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from robench.plots import leaderboard_figures
    from robench.runner import rebuild_leaderboards

    outcome = rebuild_leaderboards(Path(args.run_dir))
    out = Path(args.out) if args.out else Path(args.run_dir) / "plots"
    for path in leaderboard_figures(outcome.leaderboard, outcome.summary, out, args.metric):
        print(f"wrote {path}")
    return 0


def _show_distortions(args: argparse.Namespace) -> int:
    from robench.config import SEVERITY_TABLE_CHOICES, parse_int, parse_path
    from robench.errors import ConfigError
    from robench.plots import distortion_grid
    from robench.registry import Registry

    if args.severity_table not in SEVERITY_TABLE_CHOICES:
        raise ConfigError(f"--severity-table got {args.severity_table!r}; valid: {', '.join(SEVERITY_TABLE_CHOICES)}")
    registry = Registry(args.plugins or ())
    names = registry.resolve_distortions([n.strip() for n in args.distortions.split(",")])
    out = distortion_grid(
        registry, args.dataset, names, parse_path(args.out, "out"), index=parse_int(args.index, "index", 0),
        seed=parse_int(args.seed, "seed", 0), severity_table=args.severity_table,
        data_root=Path(args.data_root).expanduser() if args.data_root else None,
    )
    print(f"wrote {out} ({len(names)} distortions)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from robench.registry import Registry

    registry = Registry(args.plugins or ())
    blocks = []
    for kind in [args.kind] if args.kind else _KINDS:
        extra = _LIST_COLUMN.get(kind)
        rows = [[info.name, *([extra[1](info.cls)] if extra else []), info.origin, info.description]
                for info in registry.entries(kind)]
        header = ["name", *([extra[0]] if extra else []), "origin", "description"]
        blocks.append(f"{kind}:\n" + tabulate(rows, headers=header, tablefmt="simple"))
    print("\n\n".join(blocks))
    return 0
