"""``mer import-csd``: import a CMU Multimodal SDK feature sequence as a cached modality.

Exit codes as ``mer extract``: 0 done; 1 more failed samples than ``--max-failures`` (see the
modality's ``failures.jsonl``: samples without rows in their interval); 2 a config / file
problem; 75 another process writes the same cache directory (:mod:`mer.cli.errors`).
"""

from __future__ import annotations

import sys

import click

from mer.cli.errors import EXIT_FAILURES
from mer.cli.options import cli_logging, config_option, load


@click.command("import-csd")
@config_option
@click.option("--modality", required=True, metavar="NAME",
              help="Modality name: the cache folder, and the key of 'features' that trains on it.")
@click.option("--csd", "csd_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.csd",
              help="The computational sequence (default: features.<NAME>.path of the config).")
@click.option("--root", default=None, metavar="SEQUENCE",
              help="Root group of the .csd when it holds several (default: its only one).")
@click.option("--max-failures", type=float, default=None,
              help="Tolerated samples without rows: a count (>= 1) or a fraction (< 1). Default: config.")
@click.option("--wait", is_flag=True, help="Wait for another process writing the same cache instead of refusing.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def import_csd_cmd(config_path: str, overrides: tuple[str, ...], modality: str, csd_path: str | None,
                   root: str | None, max_failures: float | None, wait: bool, no_progress: bool) -> None:
    """Align a CMU-SDK .csd feature file to the manifest's intervals and cache it as a sequence.

    Each sample gets the rows of its video whose interval overlaps its [start, end) (ragged
    'frames' (T, D) and 'intervals' (T, 2)); samples without rows are recorded failures.
    Train on it with features.<NAME>: {encoder: csd, path: FILE.csd} in the config.
    """
    from mer.pipeline.import_csd import import_csd

    config = load(config_path, overrides)
    with cli_logging():
        result = import_csd(config.pipeline, modality, csd_path, root, max_failures=max_failures, wait=wait,
                            progress=not no_progress)
    report = result.report
    click.echo(report.summary())
    m = report.modalities[modality]
    click.echo(f"{modality}: {result.videos_in_file} of {result.videos_in_manifest} manifest videos are in the file; "
               f"cache {m.dir}")
    if not result.configured:
        click.echo(f"to train on it, add to {config_path}:\n{result.snippet}")
    if m.exceeded:
        limit = f"{m.max_failures:g}" + (f" = {m.allowed_failures:.1f} samples" if 0 < m.max_failures < 1 else "")
        click.echo(f"error: {modality}: {m.failures} of {m.present} samples have no aligned rows or failed "
                   f"(max failures {limit}); see {m.failures_path}", err=True)
        sys.exit(EXIT_FAILURES)


COMMANDS = (import_csd_cmd,)
