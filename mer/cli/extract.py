"""``mer extract``: run each modality's frozen encoder over the manifest into the cache.

Exit codes: 0 done; 1 more failed samples than ``--max-failures`` allows (see the modality's
``failures.jsonl``); 2 a config/manifest/cache problem to fix; 75 (EX_TEMPFAIL) another process
is writing the same encoder directory (retry later, or pass ``--wait``). See :mod:`mer.cli.errors`.
"""

from __future__ import annotations

import sys

import click

from mer.cli.errors import EXIT_FAILURES
from mer.cli.options import cli_logging, config_option, load


def report_exceeded(report) -> None:
    """Name every modality with more failures than allowed and exit 1."""
    exceeded = report.exceeded()
    for m in exceeded:
        limit = f"{m.max_failures:g}" + (f" = {m.allowed_failures:.1f} samples" if 0 < m.max_failures < 1 else "")
        click.echo(f"error: {m.modality}: {m.failures} of {m.present} samples failed (max failures {limit}); "
                   f"see {m.failures_path}", err=True)
    if exceeded:
        sys.exit(EXIT_FAILURES)


@click.command("extract")
@config_option
@click.option("--modality", "modalities", multiple=True, metavar="NAME",
              help="Only this modality (a key of 'features'); repeatable. Default: all.")
@click.option("--scheduler", default="", metavar="ADDRESS",
              help="dask.distributed scheduler address (workers must see the cache directory).")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Start a local cluster of N worker processes (one per GPU on GPU machines).")
@click.option("--device", default=None, metavar="DEVICE",
              help="cpu | cuda | cuda:N | auto (default: the config's extract.device).")
@click.option("--max-failures", type=float, default=None,
              help="Tolerated failed samples per modality: a count (>= 1) or a fraction (< 1). Default: config.")
@click.option("--retry-failures", is_flag=True, help="Re-extract the shards that contain failed samples.")
@click.option("--wait", is_flag=True, help="Wait for another extract writing the same cache instead of refusing.")
@click.option("--no-progress", is_flag=True, help="No progress bar (it is hidden anyway when stderr is not a terminal).")
def extract_cmd(config_path: str, overrides: tuple[str, ...], modalities: tuple[str, ...], scheduler: str,
                workers: int, device: str | None, max_failures: float | None, retry_failures: bool, wait: bool,
                no_progress: bool) -> None:
    """Extract frozen-encoder features into the sharded HDF5 cache (resumable).

    Re-running skips complete shards (checksums verified), redoes missing or corrupt ones and
    extracts only samples that are new in the manifest; on a complete cache it loads no model.

    \b
    Exit codes: 0 done; 1 more failures than --max-failures (see failures.jsonl);
    2 config/manifest/cache problem; 75 another extract is writing the same cache.
    """
    from mer.pipeline.extract import extract

    if scheduler and workers:
        raise click.UsageError("give either --scheduler or --workers, not both")
    config = load(config_path, overrides)
    with cli_logging():
        report = extract(config.pipeline, list(modalities) or None, scheduler=scheduler, workers=workers,
                         device=device, max_failures=max_failures, retry_failures=retry_failures, wait=wait,
                         progress=not no_progress)
    click.echo(report.summary())
    report_exceeded(report)


COMMANDS = (extract_cmd,)
