"""One shard = one task: encode its samples and publish ``shard-NNNNN.h5`` + sidecar.

The same function runs in the driver (embedded scheduler) and on ``dask.distributed``
workers, so it receives only picklable things: the encoder *options* (a dataclass), the
manifest rows and the output directory; the loaded model never travels. Each process
keeps its loaded encoders in :data:`_LOADED`, keyed by encoder key and device, so a
worker loads a model once however many shards it runs.

Inside a task the CPU work (``prepare``: decode, resample) of upcoming batches runs in a
thread pool, at most ``prefetch`` batches ahead, while this thread runs ``encode`` on the
current batch. Failures are per sample and recorded, never swallowed:

* ``SampleError`` from ``cost``/``prepare``, or from ``encode`` of a one-sample batch;
* any other exception from ``cost``/``prepare``/``encode`` (likely a bug, recorded with its
  type and traceback; it counts towards ``max_failures`` like any failure);
* a failing multi-sample batch is retried one sample at a time, so only the bad one fails;
* ``KeyboardInterrupt``, ``MemoryError`` and :class:`EncoderContractError` stop the run.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from mer.features.base import Encoder, SampleError
from mer.features.batching import make_batches
from mer.pipeline.cache import (NO_SPACE, CacheFull, cache_root_of, ensure_space, no_space_message, publish_shard,
                                shard_name, tmp_path)
from mer.pipeline.shard import (EncoderContractError, OutputProblem, assemble, convert_output, shard_image,
                                spec_to_dict)

log = logging.getLogger("mer.extract")

#: loaded encoders of this process: (encoder key, device) -> encoder
_LOADED: dict[tuple[str, str], Encoder] = {}
#: one lock per loaded encoder: ``prepare`` is thread-safe by contract, ``encode`` is not, and a
#: dask worker with several threads may run two shards of the same encoder at once
_ENCODE_LOCKS: dict[int, threading.Lock] = {}
_LOAD_LOCK = threading.Lock()


@dataclass
class ShardTask:
    """Everything a worker needs to produce one shard (all picklable)."""

    corpus: str
    modality: str
    index: int
    ids: list[str]  # sorted
    rows: list[dict]  # manifest rows, same order as ids
    options: Any  # the encoder's options dataclass
    key: str
    directory: str
    cache_dtype: str = "float16"
    device: str = "auto"
    prefetch: int = 4
    io_threads: int = 2


@dataclass
class ShardResult:
    index: int
    name: str
    ids: list[str]
    failures: list[dict]
    sha256: str
    bytes: int
    seconds: float
    outputs: list[dict]
    loaded: bool
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


# --- loaded encoders ---------------------------------------------------------------------------

def loaded_encoder(options: Any, device: Any) -> tuple[Encoder, bool]:
    """The process-wide loaded encoder for ``options`` on ``device``; True if loaded just now."""
    from mer.features.registry import build_encoder

    encoder = build_encoder(options)
    slot = (encoder.key(), str(device))
    with _LOAD_LOCK:
        if slot in _LOADED:
            return _LOADED[slot], False
        log.info("loading %s on %s", slot[0], device)
        encoder.load(device)
        _LOADED[slot] = encoder
        _ENCODE_LOCKS[id(encoder)] = threading.Lock()
        return encoder, True


def _encode_lock(encoder: Encoder) -> threading.Lock:
    with _LOAD_LOCK:
        return _ENCODE_LOCKS.setdefault(id(encoder), threading.Lock())


def release_encoders() -> int:
    """Drop this process's loaded encoders (frees model memory between modalities).

    Dropping the references frees an encoder and its model at once, unless a reference cycle
    holds them: only then is a full ``gc.collect()`` run. It is not run unconditionally because
    in a process that imported torch and transformers it walks a very large heap: a fixed cost
    per modality that dominated small extractions (bench/README.md, "Decisions and the
    measurements behind them").
    """
    with _LOAD_LOCK:
        watched = [weakref.ref(obj) for encoder in _LOADED.values() for obj in _held_objects(encoder)]
        n = len(_LOADED)
        _LOADED.clear()
        _ENCODE_LOCKS.clear()
    if any(ref() is not None for ref in watched):
        import gc

        gc.collect()
    return n


def _held_objects(encoder: Encoder) -> list[Any]:
    """The encoder and the torch modules it holds: what releasing it must free."""
    torch = sys.modules.get("torch")
    modules = [v for v in vars(encoder).values() if torch is not None and isinstance(v, torch.nn.Module)]
    return [encoder, *modules]


def task_device(name: str):
    """Resolve the device in the process that runs the task. On a ``dask.distributed`` worker
    of a LocalCluster (integer worker names) with several GPUs, worker i uses GPU i mod count."""
    from mer.features.device import resolve_device, worker_device

    device = resolve_device(name)
    return worker_device(device, _worker_index()) if device.type == "cuda" else device


def _worker_index() -> int | None:
    if "distributed" not in sys.modules:  # cannot be a dask worker; do not pay for the import
        return None
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    try:
        return int(name)
    except (TypeError, ValueError):
        return None


# --- failures ------------------------------------------------------------------------------

def failure_record(sample_id: str, exc: BaseException, default_stage: str) -> dict:
    if isinstance(exc, SampleError):
        return {"id": sample_id, "stage": exc.stage, "error": type(exc).__name__, "message": exc.message}
    if isinstance(exc, OutputProblem):
        return {"id": sample_id, "stage": exc.stage, "error": type(exc).__name__, "message": exc.message}
    # not bad input but an unexpected exception: keep the traceback, it is probably a bug
    return {"id": sample_id, "stage": default_stage, "error": type(exc).__name__, "message": str(exc) or repr(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])}


def _prepare_one(encoder: Encoder, sample_id: str, row: dict) -> tuple[bool, Any]:
    """(True, prepared) or (False, failure record). MemoryError propagates through the future."""
    try:
        return True, encoder.prepare(row)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded per sample with type and traceback, never dropped
        return False, failure_record(sample_id, exc, "prepare")


def _prepared_batches(encoder: Encoder, batches: list[list[str]], rows: dict[str, dict], prefetch: int,
                      io_threads: int) -> Iterator[tuple[list[str], dict[str, tuple[bool, Any]]]]:
    """Yield each batch with its prepared samples; ``prepare`` of the next ``prefetch`` batches
    runs in ``io_threads`` threads meanwhile. prefetch=0: everything inline, no threads."""
    if prefetch <= 0 or io_threads <= 0:
        for batch in batches:
            yield batch, {i: _prepare_one(encoder, i, rows[i]) for i in batch}
        return
    pool = ThreadPoolExecutor(io_threads, thread_name_prefix="mer-prepare")
    queue: deque[tuple[list[str], list[Future]]] = deque()
    upcoming = iter(batches)
    try:
        while True:
            while len(queue) < prefetch + 1:
                batch = next(upcoming, None)
                if batch is None:
                    break
                queue.append((batch, [pool.submit(_prepare_one, encoder, i, rows[i]) for i in batch]))
            if not queue:
                return
            batch, futures = queue.popleft()
            yield batch, {i: f.result() for i, f in zip(batch, futures)}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- the task ------------------------------------------------------------------------------

class _ShardRun:
    def __init__(self, task: ShardTask, encoder: Encoder, device: Any):
        self.task = task
        self.encoder = encoder
        self.device = device
        self.specs = encoder.outputs()
        self.results: dict[str, dict] = {}
        self.failures: dict[str, dict] = {}

    def fail(self, sample_id: str, exc: BaseException, stage: str) -> None:
        self.record(failure_record(sample_id, exc, stage))

    def record(self, record: dict) -> None:
        self.failures[record["id"]] = record
        if "traceback" in record:
            log.warning("%s %s: unexpected %s in %s: %s", self.task.modality, record["id"], record["error"],
                        record["stage"], record["message"])

    def store(self, sample_id: str, outputs: Any) -> None:
        try:
            self.results[sample_id] = convert_output(sample_id, self.task.key, outputs, self.specs,
                                                     self.task.cache_dtype)
        except OutputProblem as exc:
            self.fail(sample_id, exc, exc.stage)

    def encode(self, items: list[tuple[str, Any]]) -> None:
        from mer.features.device import inference

        retry = False
        try:
            with _encode_lock(self.encoder), inference(self.device):  # mixed precision is an encoder option (in its key)
                outputs = self.encoder.encode([prepared for _, prepared in items])
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried per sample or recorded, never dropped
            if len(items) == 1:
                self.fail(items[0][0], exc, "encode")
                return
            log.debug("%s: batch of %d failed (%s: %s); retrying one at a time", self.task.modality, len(items),
                      type(exc).__name__, exc)
            retry = True
        if retry:  # outside the except block, so the failed batch's tensors can be freed first
            for item in items:
                self.encode([item])
            return
        if not isinstance(outputs, (list, tuple)) or len(outputs) != len(items):
            got = len(outputs) if isinstance(outputs, (list, tuple)) else type(outputs).__name__
            raise EncoderContractError(f"encoder {self.task.key}.encode returned {got} results for a batch of "
                                       f"{len(items)}")
        for (sample_id, _), out in zip(items, outputs):
            self.store(sample_id, out)


def run_shard(task: ShardTask, progress: Callable[[int], None] | None = None) -> ShardResult:
    """Encode one shard and publish it atomically (see :func:`mer.pipeline.cache.publish_shard`)."""
    start = time.perf_counter()
    device = task_device(task.device)
    encoder, loaded = loaded_encoder(task.options, device)
    if encoder.key() != task.key:
        raise EncoderContractError(f"encoder key changed between planning ({task.key}) and loading "
                                   f"({encoder.key()}): its key must not depend on load()")
    run = _ShardRun(task, encoder, device)
    rows = dict(zip(task.ids, task.rows))
    costs: dict[str, float] = {}
    for sample_id in task.ids:
        try:
            costs[sample_id] = float(encoder.cost(rows[sample_id]))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded per sample, never dropped
            run.fail(sample_id, exc, "cost")
    if progress and run.failures:
        progress(len(run.failures))
    batches = make_batches(costs, encoder.batch_policy())
    for batch, prepared in _prepared_batches(encoder, batches, rows, task.prefetch, task.io_threads):
        good = []
        for sample_id in batch:
            ok, value = prepared[sample_id]
            if ok:
                good.append((sample_id, value))
            else:
                run.record(value)
        if good:
            run.encode(good)
        if progress:
            progress(len(batch))
    data = assemble(task.ids, run.results, run.specs, task.cache_dtype)
    directory = Path(task.directory)
    final = directory / f"{shard_name(task.index)}.h5"
    tmp = tmp_path(final)
    failures = [run.failures[i] for i in sorted(run.failures)]
    image = shard_image(data, run.specs, {"encoder_key": task.key, "family": encoder.family,
                                          "modality": task.modality, "corpus": task.corpus}, task.cache_dtype)
    # the sidecar lists the ids and failures: about their JSON twice over
    ensure_space(directory, len(image) + 2 * len(repr(data.ids)) + 2 * len(repr(failures)), final.name)
    try:
        with open(tmp, "wb") as fh:
            fh.write(image)
        sidecar = publish_shard(tmp, final, data.ids, failures, encoder=task.key,
                                seconds=round(time.perf_counter() - start, 3))
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in NO_SPACE:  # the disk filled up since ensure_space (another writer)
            raise CacheFull(no_space_message(directory, final.name, len(image), cache_root_of(directory))) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return ShardResult(index=task.index, name=final.stem, ids=data.ids, failures=failures,
                       sha256=sidecar["sha256"], bytes=sidecar["bytes"], seconds=time.perf_counter() - start,
                       outputs=[spec_to_dict(s, task.cache_dtype) for s in run.specs], loaded=loaded)
