"""``mer cache ls | verify | gc``: inspect, verify and clean the feature cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mer.cli.options import human_bytes, load
from mer.pipeline.cache import describe_dir, encoder_dirs, remove_encoder_dir, scan
from mer.pipeline.cache_lock import LOCK_NAME, CacheLocked, DirLock


@click.group("cache")
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
            keep.add(config.layout.encoder_dir(modality, key).resolve())
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


COMMANDS = (cache_group,)
