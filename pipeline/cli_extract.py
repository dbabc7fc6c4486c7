"""``mer extract`` and ``mer cache ls | verify | gc``.

Exit codes of ``mer extract``: 0 done; 1 more failed samples than ``--max-failures`` allows
(see the modality's ``failures.jsonl``); 2 a config/manifest/cache problem to fix;
75 (EX_TEMPFAIL) another process is writing the same encoder directory (retry later, or
pass ``--wait``).

These commands register themselves on the ``mer`` group (``pipeline/cli.py`` imports this
module at its end), which keeps the import order safe whichever module is imported first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Iterator

import click

from mer.features.base import EncoderUnavailable
from mer.pipeline.cache import CacheError, describe_dir, encoder_dir, encoder_dirs, remove_encoder_dir, scan
from mer.pipeline.cache_lock import LOCK_NAME, CacheLocked, DirLock
from mer.pipeline.cli import cli, config_option, load

EXIT_FAILURES = 1
EXIT_USER_ERROR = 2
EXIT_LOCKED = 75


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a running progress bar (printed above it, on stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own error path (prints the problem)
            self.handleError(record)


@contextlib.contextmanager
def cli_logging(level: int = logging.INFO) -> Iterator[None]:
    logger = logging.getLogger("mer")
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@cli.command("extract")
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
        try:
            report = extract(config, list(modalities) or None, scheduler=scheduler, workers=workers, device=device,
                             max_failures=max_failures, retry_failures=retry_failures, wait=wait,
                             progress=not no_progress)
        except CacheLocked as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_LOCKED)
        except (CacheError, EncoderUnavailable) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
    click.echo(report.summary())
    exceeded = report.exceeded()
    for m in exceeded:
        limit = f"{m.max_failures:g}" + (f" = {m.allowed_failures:.1f} samples" if 0 < m.max_failures < 1 else "")
        click.echo(f"error: {m.modality}: {m.failures} of {m.present} samples failed (max failures {limit}); "
                   f"see {m.failures_path}", err=True)
    if exceeded:
        sys.exit(EXIT_FAILURES)


@cli.group("cache")
def cache_group() -> None:
    """Inspect, verify and clean the feature cache."""


@cache_group.command("ls")
@click.option("--root", default="cache", show_default=True, type=click.Path(file_okay=False),
              help="Cache root (cache.root of your configs).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ls_cmd(root: str, as_json: bool) -> None:
    """List encoder caches: family, samples, failures, size on disk, complete or not."""
    infos = [describe_dir(d) for d in encoder_dirs(root)]
    if as_json:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    if not infos:
        click.echo(f"no feature caches under {root}")
        return
    click.echo(f"{'corpus':<14} {'modality':<10} {'encoder key':<26} {'family':<10} {'samples':>8} "
               f"{'failures':>8} {'size':>10}  status")
    for i in infos:
        click.echo(f"{i.corpus:<14} {i.modality:<10} {i.key:<26} {i.family:<10} {i.samples:>8} {i.failures:>8} "
                   f"{human_bytes(i.bytes):>10}  {i.status}")


@cache_group.command("verify")
@click.option("--root", default="cache", show_default=True, type=click.Path(file_okay=False), help="Cache root.")
def verify_cmd(root: str) -> None:
    """Re-check every shard's sha256 and every spec.json; name corrupt or incomplete shards and
    unusable specs, and exit 1 if any."""
    dirs = encoder_dirs(root)
    if not dirs:
        click.echo(f"no feature caches under {root}")
        return
    bad = bad_spec = unverified = shards = 0
    for directory in dirs:
        lock = DirLock(directory, shared=True, create=False)
        if (directory / LOCK_NAME).exists():
            try:
                lock.acquire()
            except CacheLocked as exc:
                click.echo(f"BUSY {directory}: {exc}; not verified", err=True)
                unverified += 1
                continue
        try:
            state = scan(directory, verify=True)
        finally:
            lock.release()
        shards += len(state.complete)
        if state.spec_problem:
            bad += 1
            bad_spec += 1
            click.echo(f"BAD-SPEC {directory / 'spec.json'}: {state.spec_problem}")
        for problem in sorted(state.problems.values(), key=lambda p: p.index):
            bad += 1
            if problem.kind == "corrupt":
                click.echo(f"CORRUPT {problem.path}: expected sha256 {problem.expected}, actual {problem.actual}")
            elif problem.kind == "size":
                click.echo(f"CORRUPT {problem.path}: expected {problem.expected} bytes, actual {problem.actual}")
            else:
                click.echo(f"INCOMPLETE {problem.path}: {problem.detail}")
        if not state.problems and not state.spec_problem:
            click.echo(f"ok {directory}: {len(state.complete)} shard(s)")
    click.echo(f"{shards} shard(s) verified, {bad} problem(s)"
               + (f", {unverified} director(ies) busy and not verified" if unverified else ""))
    if bad > bad_spec:
        click.echo("re-run mer extract to redo the shards named above", err=True)
    if bad_spec:
        click.echo("remove each bad spec.json named above, then re-run mer extract: it rewrites it", err=True)
    if bad or unverified:
        sys.exit(1)


@cache_group.command("gc")
@click.option("-c", "--config", "config_paths", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="A config whose caches to keep (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override applied to every config.")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help="Also collect under this cache root (default: the configs' cache.root).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def gc_cmd(config_paths: tuple[str, ...], overrides: tuple[str, ...], root: str | None, yes: bool) -> None:
    """Remove encoder caches that none of the given configs references.

    A config references <root>/<corpus>/<modality>/<key> for each of its 'features'. Everything
    else under the roots (other encoders, options, corpora) is removed after confirmation.
    """
    from mer.features.registry import build_encoder

    keep: set[Path] = set()
    roots: list[Path] = []
    for path in config_paths:
        config = load(path, overrides)
        roots.append(Path(config.cache.root))
        for modality, options in config.features.items():
            key = build_encoder(options).key()
            keep.add(encoder_dir(config.cache.root, config.corpus, modality, key).resolve())
    if root:
        roots.append(Path(root))
    seen: set[Path] = set()
    doomed = []
    for r in roots:
        for directory in encoder_dirs(r):
            resolved = directory.resolve()
            if resolved not in keep and resolved not in seen:
                seen.add(resolved)
                doomed.append(directory)
    if not doomed:
        click.echo(f"nothing to remove ({len(keep)} referenced encoder cache(s) kept)")
        return
    infos = [describe_dir(d) for d in doomed]
    total = sum(i.bytes for i in infos)
    for i in infos:
        click.echo(f"remove {i.path}  ({i.family}, {i.samples} samples, {human_bytes(i.bytes)})")
    if not yes:
        click.confirm(f"remove {len(infos)} encoder cache(s), {human_bytes(total)}?", abort=True)
    freed = 0
    removed = 0
    for directory in doomed:
        try:
            with DirLock(directory):
                freed += remove_encoder_dir(directory)
                removed += 1
        except CacheLocked as exc:
            click.echo(f"skipped {directory}: {exc}", err=True)
    click.echo(f"removed {removed} encoder cache(s), freed {human_bytes(freed)}")
