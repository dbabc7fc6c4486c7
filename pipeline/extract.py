"""``mer extract``: run each modality's frozen encoder over the manifest into the feature cache.

Per modality: take the encoder directory's lock, delete temporary files of killed runs,
verify every existing shard's checksum, plan the missing shards (:func:`mer.pipeline.cache.make_plan`),
run them as Dask tasks, then rebuild ``failures.jsonl`` and ``spec.json``. A run over a
complete cache verifies and stops without loading any model.

Schedulers:

* embedded (default): Dask's synchronous scheduler in this process over one delayed task
  per shard; the encoder is loaded once and reused by every shard;
* ``workers=N``: a ``LocalCluster`` of N single-threaded worker processes (each loads the
  encoder once; on a multi-GPU machine worker i uses GPU i mod #GPUs);
* ``scheduler=ADDRESS``: an existing ``dask.distributed`` cluster whose workers see the same
  cache directory (shared file system).

Workers write their shard files themselves; the driver holds the lock and writes
``spec.json`` / ``failures.jsonl``. Killing a driver that uses a remote ``--scheduler`` does not
stop tasks already running on remote workers: wait for them before re-running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mer.features.registry import build_encoder
from mer.pipeline.cache import (CACHE_FORMAT, CACHE_FORMAT_VERSION, FAILURES_NAME, Plan, ShardRecord,
                                allowed_failures, check_spec_compatible, clean_tmp, make_plan, now_iso,
                                package_versions, read_plan, read_spec, remove_shard, scan, shard_name, write_failures,
                                write_json, write_plan)
from mer.pipeline.cache_lock import DirLock
from mer.pipeline.config import PipelineConfig
from mer.pipeline.config_schema import ConfigError
from mer.pipeline.layout import plain_json
from mer.pipeline.read_verify import record_extracted
from mer.pipeline.shard_task import ShardResult, ShardTask, loaded_encoder, release_encoders, run_shard, task_device

log = logging.getLogger("mer.extract")


# --- reports ---------------------------------------------------------------------------------

@dataclass
class ModalityReport:
    modality: str
    key: str
    family: str
    dir: str
    #: samples of the manifest that have this modality
    present: int
    shards_extracted: int
    #: complete shards found (checksums verified) and kept
    shards_skipped: int
    samples_extracted: int
    #: failed samples among the present ones, in the whole cache after this run
    failures: int
    new_failures: int
    seconds: float
    loaded: bool
    complete: bool
    max_failures: float = 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples_extracted / self.seconds if self.seconds > 0 else 0.0

    @property
    def allowed_failures(self) -> float:
        return allowed_failures(self.max_failures, self.present)

    @property
    def exceeded(self) -> bool:
        return self.failures > self.allowed_failures

    @property
    def failures_path(self) -> str:
        return str(Path(self.dir) / FAILURES_NAME)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(samples_per_s=self.samples_per_s, exceeded=self.exceeded, failures_path=self.failures_path)
        return data


@dataclass
class ExtractReport:
    manifest: str
    fingerprint: str
    samples: int
    modalities: dict[str, ModalityReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.exceeded()

    def exceeded(self) -> list[ModalityReport]:
        return [m for m in self.modalities.values() if m.exceeded]

    def summary(self) -> str:
        head = (f"{'modality':<12} {'encoder key':<24} {'shards new/kept':>15} {'present':>8} {'extracted':>9} "
                f"{'failures':>8} {'seconds':>8} {'samples/s':>9}")
        lines = [head]
        for m in self.modalities.values():
            lines.append(f"{m.modality:<12} {m.key:<24} {f'{m.shards_extracted}/{m.shards_skipped}':>15} "
                         f"{m.present:>8} {m.samples_extracted:>9} {m.failures:>8} {m.seconds:>8.1f} "
                         f"{m.samples_per_s:>9.1f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "fingerprint": self.fingerprint, "samples": self.samples,
                "modalities": {k: v.to_dict() for k, v in self.modalities.items()}}


# --- runners: where the shard tasks execute ------------------------------------------------

OnSamples = Callable[[int], None]
OnResult = Callable[[ShardResult], None]


@contextlib.contextmanager
def _torch_threads(io_threads: int) -> Iterator[None]:
    """Leave some cores to the prefetch threads on larger machines, never raise torch's own
    choice, and respect an explicit OMP_NUM_THREADS / MKL_NUM_THREADS. Restored afterwards
    (extract() may run in a notebook).

    The prefetch threads mostly wait on I/O and on soundfile/soxr, which release the GIL, so
    they need a fraction of a core each: at most a quarter of the cores is set aside for them
    (none on 2 cores, where the model loses far more from one thread fewer than prefetching
    gains; the measurement is in bench/README.md, "Decisions and the measurements behind them").
    """
    import torch

    from mer.features.device import usable_cpus

    before = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        yield
        return
    cpus = usable_cpus()
    reserve = min(max(0, io_threads), cpus // 4)
    torch.set_num_threads(max(1, min(before, cpus - reserve)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class EmbeddedRunner:
    """Dask's synchronous scheduler in this process: shard tasks run one after another and
    share this process's loaded encoder."""

    name = "embedded"

    def run(self, tasks: list[ShardTask], on_samples: OnSamples, on_result: OnResult) -> None:
        import dask

        def one(task: ShardTask, after: int | None) -> int:
            result = run_shard(task, on_samples)
            on_result(result)
            return result.index

        # each task depends on the previous one: shards run in index order, so the complete
        # shards of a killed run are always a prefix of the plan
        previous = None
        for task in tasks:
            previous = dask.delayed(one, pure=False)(task, previous,
                                                     dask_key_name=f"mer-{task.modality}-{shard_name(task.index)}")
        with _torch_threads(tasks[0].io_threads if tasks and tasks[0].prefetch > 0 else 0):
            dask.compute(previous, scheduler="synchronous")

    def check_device(self, device: str) -> None:
        """Fail before any work when the device cannot be had here (e.g. cuda without CUDA)."""
        try:
            task_device(device)
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"extract.device / --device {device!r}: {exc}") from None

    def release(self) -> None:
        release_encoders()

    def close(self) -> None:
        release_encoders()


class DistributedRunner:
    """``dask.distributed``: an existing scheduler, or a LocalCluster started on first use."""

    name = "distributed"

    def __init__(self, scheduler: str = "", workers: int = 0):
        self.scheduler = scheduler
        self.workers = workers
        self._client = None
        self._cluster = None

    def client(self):
        if self._client is None:
            from distributed import Client

            if self.scheduler:
                log.info("connecting to dask scheduler %s", self.scheduler)
                self._client = Client(self.scheduler)
            else:
                self._cluster = _local_cluster(self.workers)
                self._client = Client(self._cluster)
        return self._client

    def check_device(self, device: str) -> None:
        """Devices are resolved on the workers (the driver may have no GPU)."""

    def run(self, tasks: list[ShardTask], on_samples: OnSamples, on_result: OnResult) -> None:
        from distributed import as_completed

        client = self.client()
        run_id = uuid.uuid4().hex[:8]
        futures = [client.submit(run_shard, t, key=f"mer-{t.modality}-{shard_name(t.index)}-{run_id}", pure=False)
                   for t in tasks]
        try:
            for future in as_completed(futures):
                result: ShardResult = future.result()
                on_samples(len(result.ids))
                on_result(result)
        except BaseException:
            client.cancel(futures)
            raise

    def release(self) -> None:
        if self._client is not None:
            self._client.run(release_encoders)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _local_cluster(workers: int):
    """N single-threaded worker processes, each allowed cpus/N threads for torch/BLAS, without
    Dask's MALLOC_TRIM_THRESHOLD_ (see mer.pipeline.cluster_env)."""
    from distributed import LocalCluster

    from mer.features.device import usable_cpus
    from mer.pipeline.cluster_env import torch_friendly_workers

    cpus = usable_cpus()
    threads = str(max(1, cpus // workers))
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in names}
    log.info("starting a LocalCluster: %d worker processes, %s torch threads each", workers, threads)
    # the nanny copies pre-spawn-environ into os.environ of THIS process before spawning; restore it
    with torch_friendly_workers(**{k: threads for k in names}):
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.WARNING)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return cluster


# --- extraction ------------------------------------------------------------------------------

def extract(config: PipelineConfig, modalities: list[str] | None = None, *, scheduler: str = "",
            workers: int = 0, device: str | None = None, max_failures: float | None = None,
            retry_failures: bool = False, wait: bool = False, progress: bool = True) -> ExtractReport:
    """Extract the features of ``modalities`` (default: all of ``config.features``) into the cache.

    Arguments left empty fall back to ``config.extract``. Returns a report; the caller decides
    what exceeding ``max_failures`` means (the CLI exits 1). Raises ConfigError for a bad
    request, :class:`~mer.pipeline.cache_lock.CacheLocked` when another process writes a
    directory (unless ``wait``), :class:`~mer.pipeline.cache.CacheError` for a directory that
    cannot be used as asked.
    """
    where = config.source or "config"
    names = list(modalities) if modalities else list(config.features)
    unknown = [m for m in names if m not in config.features]
    if unknown:
        raise ConfigError(f"{where}: no encoder configured for modality {unknown[0]!r}; "
                          f"'features' has: {', '.join(config.features) or '(nothing)'}")
    if not names:
        raise ConfigError(f"{where}: 'features' is empty: nothing to extract")
    scheduler = scheduler or config.extract.scheduler
    workers = workers or config.extract.workers
    if scheduler and workers:
        raise ConfigError(f"{where}: give either a scheduler address or a number of workers, not both")
    if workers < 0:
        raise ConfigError(f"{where}: workers must be >= 0, got {workers}")
    device = device or config.extract.device
    max_failures = config.extract.max_failures if max_failures is None else float(max_failures)
    try:
        allowed_failures(max_failures, 0)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    from mer.pipeline.corpus import prepare_manifest

    result, manifest_path = prepare_manifest(config, progress=progress)
    manifest = result.manifest
    log.info("manifest %s: %d samples, fingerprint %s", manifest_path, len(manifest), manifest.fingerprint)
    rows = manifest.rows()
    report = ExtractReport(manifest=str(manifest_path), fingerprint=manifest.fingerprint, samples=len(manifest))
    runner = DistributedRunner(scheduler, workers) if (scheduler or workers) else EmbeddedRunner()
    try:
        for modality in names:
            report.modalities[modality] = _extract_modality(
                config, modality, rows, manifest.fingerprint, str(manifest_path), runner,
                _RunOptions(device, max_failures, retry_failures, wait, progress))
            runner.release()
    finally:
        runner.close()
    return report


@dataclass(frozen=True)
class _RunOptions:
    """How this ``extract()`` call runs every modality (resolved against ``config.extract``)."""

    device: str
    max_failures: float
    retry_failures: bool
    wait: bool
    progress: bool


def _extract_modality(config: PipelineConfig, modality: str, rows: list[dict], fingerprint: str,
                      manifest_path: str, runner: EmbeddedRunner | DistributedRunner,
                      run: _RunOptions) -> ModalityReport:
    start = time.perf_counter()
    options = config.features[modality]
    encoder = build_encoder(options)
    key = encoder.key()
    directory = config.layout.encoder_dir(modality, key)
    present_rows = {r["id"]: r for r in rows if encoder.present(r)}
    cache_dtype = config.cache.dtype

    with DirLock(directory, wait=run.wait, on_wait=log.warning):
        old_spec, plan = _plan_modality(directory, modality, key, cache_dtype, list(present_rows),
                                        config.cache.shard_size, run.retry_failures)
        records: dict[int, ShardRecord] = dict(plan.complete)
        stats = _RunStats(outputs=(old_spec or {}).get("outputs"))

        writer = _SpecWriter(directory, encoder, modality, config, present_rows, fingerprint, manifest_path, old_spec)

        def spec(status: str) -> None:
            writer.write(stats.outputs, records, status)

        complete = False
        try:
            if plan.pending:
                runner.check_device(run.device)
                spec("incomplete")
                tasks = [ShardTask(corpus=config.corpus, modality=modality, index=index, ids=ids,
                                   rows=[present_rows[i] for i in ids], options=options, key=key,
                                   directory=str(directory), cache_dtype=cache_dtype, device=run.device,
                                   prefetch=config.extract.prefetch,
                                   io_threads=config.extract.io_threads)
                         for index, ids in plan.pending.items()]
                _run_tasks(runner, tasks, modality, plan.pending_samples, run.progress, records, stats)
                write_plan(directory, Plan(pending={}, complete=records, remove=[]))
            if stats.outputs is None:
                # nothing was ever extracted here (no present sample): learn the outputs once, on
                # the CPU (the driver of a distributed run may have no GPU)
                loaded_now, stats.loaded = loaded_encoder(options, task_device("cpu"))
                stats.outputs = _outputs_dicts(loaded_now, cache_dtype)
            stored = {i for r in records.values() for i in r.ids}
            complete = all(i in stored for i in present_rows)
            record_extracted(directory, records.values())
        finally:  # also after Ctrl-C or a failed task: failures.jsonl and spec.json match the shards
            write_failures(directory, modality, records.values())
            spec("complete" if complete else "incomplete")

    failures = sum(1 for r in records.values() for f in r.failures if f["id"] in present_rows)
    report = ModalityReport(
        modality=modality, key=key, family=encoder.family, dir=str(directory), present=len(present_rows),
        shards_extracted=len(plan.pending), shards_skipped=len(plan.complete),
        samples_extracted=plan.pending_samples, failures=failures, new_failures=stats.new_failures,
        seconds=time.perf_counter() - start, loaded=stats.loaded, complete=complete, max_failures=run.max_failures)
    log.info("%s: %d samples extracted, %d failure(s) (%d new), %.1f s, %.1f samples/s", modality,
             report.samples_extracted, failures, stats.new_failures, report.seconds, report.samples_per_s)
    return report


def _plan_modality(directory: Path, modality: str, key: str, cache_dtype: str, present_ids: list[str],
                   shard_size: int, retry_failures: bool) -> tuple[dict | None, Plan]:
    """Under the lock: clean up, verify, plan; persist the plan and delete shards to redo."""
    removed = clean_tmp(directory)
    if removed:
        log.info("%s: removed %d temporary file(s) of an interrupted run", modality, len(removed))
    old_spec = read_spec(directory)
    check_spec_compatible(directory, old_spec, key, cache_dtype)
    state = scan(directory, verify=True)
    for problem in state.problems.values():
        detail = f" (expected sha256 {problem.expected}, got {problem.actual})" if problem.kind == "corrupt" else ""
        log.warning("%s: %s is not complete: %s%s; it will be redone", modality, problem.path.name, problem.detail,
                    detail)
    plan = make_plan(present_ids, shard_size, state, read_plan(directory), retry_failures)
    log.info("%s [%s]: %d present samples, %d complete shard(s) verified, %d shard(s) to extract (%d samples) "
             "-> %s", modality, key, len(present_ids), len(plan.complete), len(plan.pending), plan.pending_samples,
             directory)
    write_plan(directory, plan)  # before deleting anything: the ids of a redone shard stay known
    for index in plan.remove:
        remove_shard(directory, index)
    return old_spec, plan


@dataclass
class _RunStats:
    outputs: list[dict] | None = None
    loaded: bool = False
    new_failures: int = 0
    done: int = 0


def _run_tasks(runner: EmbeddedRunner | DistributedRunner, tasks: list[ShardTask], modality: str, total: int,
               progress: bool, records: dict[int, ShardRecord], stats: _RunStats) -> None:
    """Run the shard tasks with a progress bar; ``records``/``stats`` follow each finished shard."""
    bar = _progress_bar(modality, total, progress)

    def on_result(result: ShardResult) -> None:
        records[result.index] = ShardRecord(index=result.index, ids=result.ids, failures=result.failures,
                                            sha256=result.sha256, bytes=result.bytes)
        stats.outputs = result.outputs
        stats.loaded = stats.loaded or result.loaded
        stats.new_failures += len(result.failures)
        stats.done += 1
        rate = bar.format_dict.get("rate") or 0.0
        bar.set_postfix_str(f"shard {stats.done}/{len(tasks)}, {rate:.1f} samples/s", refresh=False)

    try:
        runner.run(tasks, bar.update, on_result)
    finally:
        bar.close()


def _outputs_dicts(encoder, cache_dtype: str) -> list[dict]:
    from mer.pipeline.shard import spec_to_dict

    return [spec_to_dict(s, cache_dtype) for s in encoder.outputs()]


def _progress_bar(modality: str, total: int, progress: bool):
    from tqdm.auto import tqdm

    # disable=None: shown on a terminal, silent when stderr is a pipe or a file (logs, CI)
    return tqdm(total=total, desc=modality, unit="sample", disable=None if progress else True, dynamic_ncols=True,
                file=sys.stderr)


@dataclass
class _SpecWriter:
    """``spec.json`` of one encoder directory: what stays fixed during a run, written at each
    status change (incomplete before the shards run, complete or incomplete after)."""

    directory: Path
    encoder: Any
    modality: str
    config: PipelineConfig
    present: dict[str, dict]
    fingerprint: str
    manifest_path: str
    old_spec: dict | None

    def write(self, outputs: list[dict] | None, records: dict[int, ShardRecord], status: str) -> None:
        failed_present = sum(1 for r in records.values() for f in r.failures if f["id"] in self.present)
        config = self.config
        spec = {
            "format": CACHE_FORMAT,
            "format_version": CACHE_FORMAT_VERSION,
            "key": self.encoder.key(),
            "family": self.encoder.family,
            "modality": self.modality,
            "corpus": config.corpus,
            "encoder": plain_json(self.encoder.key_material()),
            "columns": list(self.encoder.columns),
            "outputs": outputs,
            "cache": {"dtype": config.cache.dtype, "shard_size": config.cache.shard_size},
            "manifest": {"fingerprint": self.fingerprint, "path": self.manifest_path, "present": len(self.present)},
            "versions": package_versions(),
            "status": status,
            "counts": {"shards": len(records), "samples": sum(len(r.ids) for r in records.values()),
                       "failures": sum(len(r.failures) for r in records.values()),
                       "present_failures": failed_present},
            "created": (self.old_spec or {}).get("created") or now_iso(),
            "updated": now_iso(),
        }
        write_json(self.directory / "spec.json", spec)
