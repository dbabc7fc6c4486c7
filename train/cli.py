"""``mer train``, ``mer evaluate`` and ``mer ablate`` (registered on the ``mer`` group in
:mod:`mer.pipeline.cli`). Expected problems (missing cache, bad data, invalid model/modality
combination) print one message and exit with status 2, like the other commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mer.pipeline.config import load_config
from mer.train.errors import CacheError, DataError, TrainingError

#: errors that are the user's to fix: one message, exit code 2
TRAIN_ERRORS = (CacheError, DataError, TrainingError)


def _fail(exc: Exception) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def _seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint="--seeds") from None


def _config_options(f):
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a config field, e.g. --set train.lr=3e-4 (repeatable).")(f)
    return click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
                        help="Experiment config (YAML).")(f)


@click.command("train")
@_config_options
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: <output>/<corpus>/<model>-<modalities>-<timestamp>).")
@click.option("--seeds", default=None, help="Comma-separated seeds, e.g. 0,1,2 (default: train.seeds).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:1 (default: train.device).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(config_path: str, overrides: tuple[str, ...], run_dir: str | None, seeds: str | None,
              device: str | None, quiet: bool) -> None:
    """Train a fusion head over cached features; writes metrics, predictions, plots and model.pt."""
    from mer.train.run import format_table, train_experiment

    overrides = tuple(overrides) + ((f"train.device={device}",) if device else ())
    config = load_config(config_path, overrides)
    try:
        folder, summary, results = train_experiment(config, Path(run_dir) if run_dir else None, _seeds(seeds),
                                                    overrides, progress=not quiet, log=click.echo)
    except TRAIN_ERRORS as exc:
        _fail(exc)
    click.echo(format_table(summary, config.train.multilabel))
    click.echo(f"run: {folder}")


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--split", type=click.Choice(["test", "val", "train", "all"]), default="test", show_default=True)
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Evaluate on another corpus's manifest (its caches must have the run's encoder keys).")
@click.option("--device", default=None, help="Default: the run's train.device.")
@click.option("--json", "as_json", is_flag=True, help="Print the full metrics as JSON.")
def evaluate_cmd(run_dir: str, split: str, manifest_path: str | None, device: str | None, as_json: bool) -> None:
    """Re-load RUN_DIR/model.pt and recompute the metrics of a split."""
    import pandas as pd

    from mer.train.evaluate import evaluate_run
    from mer.train.metrics import headline

    try:
        metrics = evaluate_run(run_dir, split, manifest_path, device, log=click.echo)
    except TRAIN_ERRORS as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    multilabel = "wa" in metrics
    table = pd.DataFrame([headline(metrics, multilabel)], index=[split]).map(lambda v: f"{v:.4f}")
    click.echo(f"{run_dir} ({metrics.get('n', 0)} samples)\n{table.to_string()}")


@click.command("ablate")
@_config_options
@click.option("-g", "--grid", "grid_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Grid of axes (YAML): modalities, model, seeds, train.* lists.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: <output>/<corpus>/ablate-<grid name>).")
@click.option("--scheduler", default="", help="dask.distributed scheduler address to run cells on.")
@click.option("--workers", type=int, default=0, help="Start a local Dask cluster with N worker processes.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def ablate_cmd(config_path: str, overrides: tuple[str, ...], grid_path: str, out: str | None, scheduler: str,
               workers: int, quiet: bool) -> None:
    """Train every cell of a grid × seeds; writes ablation.csv and ablation.md; resumes."""
    from mer.train.ablate import ablate

    try:
        folder, table = ablate(config_path, grid_path, overrides, out, scheduler, workers, progress=not quiet,
                               log=click.echo)
    except TRAIN_ERRORS as exc:
        _fail(exc)
    click.echo((folder / "ablation.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {folder / 'ablation.csv'} and {folder / 'ablation.md'}")


COMMANDS = (train_cmd, evaluate_cmd, ablate_cmd)
