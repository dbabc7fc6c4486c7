"""``mer train``, ``mer evaluate`` and ``mer ablate``: heads over cached features.

Expected problems (missing cache, bad data, invalid model/modality combination) raise and
become one message with exit status 2 (:mod:`mer.cli.errors`).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from mer.cli.options import config_option, load, parse_seeds


@click.command("train")
@config_option
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default: <output>/<corpus>/<model>-<modalities>-<timestamp>).")
@click.option("--seeds", default=None, help="Comma-separated seeds, e.g. 0,1,2 (default: train.seeds).")
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:1 (default: train.device).")
@click.option("--folds", default=None,
              help="Cross-validate: 'all' or comma-separated folds (e.g. 1,3) of the dataset's protocol; "
                   "one run folder per fold, cv.json and cv.md in --run-dir.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(config_path: str, overrides: tuple[str, ...], run_dir: str | None, seeds: str | None,
              device: str | None, folds: str | None, quiet: bool) -> None:
    """Train a fusion head over cached features; writes metrics, predictions, plots and model.pt."""
    from mer.experiment import train_experiment
    from mer.train.run import format_table

    overrides = tuple(overrides) + ((f"train.device={device}",) if device else ())
    config = load(config_path, overrides)
    if folds is not None:
        from mer.cv import cross_validate

        folder, _ = cross_validate(config_path, folds, overrides, run_dir, parse_seeds(seeds),
                                   progress=not quiet, log=click.echo)
        click.echo((folder / "cv.md").read_text(encoding="utf-8"))
        click.echo(f"cv: {folder}")
        return
    folder, summary, results = train_experiment(config, Path(run_dir) if run_dir else None, parse_seeds(seeds),
                                                overrides, progress=not quiet, log=click.echo)
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
    """Re-load RUN_DIR/model.pt and recompute the metrics of a split; prints the run's protocol card."""
    import pandas as pd

    from mer.train.evaluate import evaluate_run, load_checkpoint
    from mer.train.metrics import headline
    from mer.train.protocol import format_card

    metrics = evaluate_run(run_dir, split, manifest_path, device, log=click.echo)
    if as_json:  # the metrics alone (the card is in the run's metrics.json)
        click.echo(json.dumps(metrics, indent=2))
        return
    card = load_checkpoint(run_dir).get("protocol")
    if card:
        click.echo(("the run was trained under (scored here on " + str(manifest_path) + "):\n" if manifest_path
                    else "") + format_card(card))
    multilabel = "wa" in metrics
    table = pd.DataFrame([headline(metrics, multilabel)], index=[split]).map(lambda v: f"{v:.4f}")
    click.echo(f"{run_dir} ({metrics.get('n', 0)} samples)\n{table.to_string()}")


@click.command("ablate")
@config_option
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
    from mer.ablate import ablate

    folder, table = ablate(config_path, grid_path, overrides, out, scheduler, workers, progress=not quiet,
                           log=click.echo)
    click.echo((folder / "ablation.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {folder / 'ablation.csv'} and {folder / 'ablation.md'}")


COMMANDS = (train_cmd, evaluate_cmd, ablate_cmd)
