"""The content-addressed feature cache on disk: layout, integrity, and the shard plan.

Layout::

    <cache root>/<corpus>/manifest.csv                     (written by prepare_manifest)
    <cache root>/<corpus>/<modality>/<encoder key>/
        spec.json          the encoder's full spec (key material), output specs, cache dtype,
                           shard size, manifest fingerprint of the last run, package versions,
                           status ("complete" | "incomplete") and counts
        shard-00000.h5     HDF5 shard (format: :mod:`mer.pipeline.shard`)
        shard-00000.json   its sidecar: ids, ids_sha256, n, sha256 and size of the .h5 bytes,
                           failures, created
        failures.jsonl     one line per failed sample, rebuilt from the sidecars after each run
        plan.json          the pending shards of an unfinished run (removed once all are done)
        .lock              flock held by the one process that writes this directory

Guarantees:

* A shard is **complete** iff its sidecar exists and the .h5's size and sha256 match it. A shard
  is written to ``shard-NNNNN.h5.tmp-<pid>-<uuid>``, fsynced, hashed, ``os.replace``d into place,
  and only then is its sidecar written (also tmp + replace). A crash at any moment leaves either
  a complete shard or files that the next run recognises as incomplete and redoes.
* The encoder key names the directory, so different encoders (options, weights, code version)
  never share files; one process writes a directory at a time (:mod:`.cache_lock`).
* The plan is deterministic: ids not yet in a complete shard are sorted and chunked into
  ``shard_size`` shards numbered after the highest existing one, and the plan of an unfinished
  run is kept in ``plan.json``, so a killed run resumes with exactly the same shards even when
  shards finished out of order (distributed workers).
* The cache is keyed by sample **id**: ids that leave the manifest stay cached (harmless, the
  store returns only what is asked); an id whose content changes under the same id is NOT
  re-extracted - remove the encoder directory (``rm -r`` or ``mer cache gc``) to force it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from mer.pipeline.layout import SPEC_NAME, CacheError, candidate_encoder_dirs

CACHE_FORMAT = "mer-feature-cache"
CACHE_FORMAT_VERSION = 1
PLAN_NAME = "plan.json"
FAILURES_NAME = "failures.jsonl"
TMP_MARK = ".tmp-"
SHARD_RE = re.compile(r"^shard-(\d{5,})\.(h5|json)$")
HASH_CHUNK = 1 << 20
#: files of an encoder directory that are not cache content (the writers' lock, the readers' record)
BOOKKEEPING = (".lock", ".verified.json")




class CacheFull(CacheError):
    """No space left for the cache; the message names the folder, the bytes needed and free."""


#: errno values that mean "the file system is full" (ENOSPC) or "your quota is" (EDQUOT)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: room kept beyond a shard's own bytes: its sidecar, then spec.json, failures.jsonl, plan.json
SPACE_MARGIN = 256 << 10


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def no_space_message(folder: Path, what: str, needed: int, root: Path | None = None) -> str:
    """The one message for a full disk: where (the cache root when known, and the folder), how
    much is needed and free, and what to do."""
    folder = Path(folder)
    try:
        free = f"{_human(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = "free space unknown"
    where = f"{root} (in {folder.relative_to(root)}/)" if root is not None and folder.is_relative_to(root) else folder
    return (f"no space left for the feature cache under {where}: {what} needs about {_human(needed)}, {free}; "
            f"free some space or set cache.root to a larger disk, then re-run mer extract (complete shards are "
            f"kept, the partial file was removed)")


def cache_root_of(directory: Path) -> Path:
    """The cache root of an encoder directory ``<root>/<corpus>/<modality>/<key>``."""
    return Path(directory).parents[2]


def ensure_space(directory: Path, needed: int, what: str) -> None:
    """Refuse (CacheFull) before writing ``needed`` bytes into an encoder directory where fewer
    are free (plus :data:`SPACE_MARGIN` for the sidecar and the final spec/failures files)."""
    if shutil.disk_usage(directory).free < needed + SPACE_MARGIN:
        raise CacheFull(no_space_message(directory, what, needed + SPACE_MARGIN, cache_root_of(directory)))


# --- small primitives ------------------------------------------------------------------------

def canonical_json(obj: Any, indent: int | None = 2) -> str:
    """The one JSON rendering used for every cache file: sorted keys, UTF-8, no NaN."""
    if indent is None:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False, indent=indent) + "\n"


def tmp_path(path: Path) -> Path:
    """A unique temporary name beside ``path`` (same directory, so ``os.replace`` is atomic)."""
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def fsync_dir(directory: Path) -> None:
    """Make a rename durable (the directory entry), where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (and all of Windows) cannot fsync a directory; rename is still atomic
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """tmp + fsync + os.replace: readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _crash_point(f"write-{path.name}")  # e.g. write-spec.json, write-failures.jsonl
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in NO_SPACE:
            raise CacheFull(no_space_message(path.parent, path.name, len(data))) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(Path(path), canonical_json(obj).encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = HASH_CHUNK) -> str:
    """Streaming sha256 (1 MiB reads: constant memory, and hashlib releases the GIL)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def ids_digest(ids: Iterable[str]) -> str:
    return hashlib.sha256(canonical_json(list(ids), indent=None).encode("utf-8")).hexdigest()


def now_iso() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def package_versions() -> dict[str, str | None]:
    """Versions that can change features, read from package metadata (no heavy imports)."""
    versions: dict[str, str | None] = {}
    for name in ("torch", "transformers", "numpy", "h5py", "mer"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import platform

    versions["python"] = platform.python_version()
    return versions


def allowed_failures(max_failures: float, present: int) -> float:
    """``max_failures`` as a count (>= 1) or a fraction (< 1) of the present samples."""
    if max_failures < 0 or math.isnan(max_failures):
        raise ValueError(f"max_failures must be >= 0, got {max_failures}")
    return float(max_failures) if max_failures >= 1 else max_failures * present


# --- shards ------------------------------------------------------------------------------------

@dataclass
class ShardRecord:
    """A complete shard, as described by its sidecar."""

    index: int
    ids: list[str]
    failures: list[dict]
    sha256: str
    bytes: int

    @property
    def name(self) -> str:
        return shard_name(self.index)

    @property
    def failed_ids(self) -> set[str]:
        return {f["id"] for f in self.failures}


@dataclass
class ShardProblem:
    """A shard that is not complete: why, and its ids when its sidecar still tells them."""

    index: int
    path: Path
    kind: str  # corrupt | size | missing-h5 | no-sidecar | bad-sidecar
    detail: str
    ids: list[str] | None = None
    expected: str | None = None
    actual: str | None = None


@dataclass
class ScanResult:
    complete: dict[int, ShardRecord] = field(default_factory=dict)
    problems: dict[int, ShardProblem] = field(default_factory=dict)
    #: what is wrong with spec.json for a reader (:func:`spec_problem`), None when it is usable
    spec_problem: str | None = None

    @property
    def highest(self) -> int:
        return max([*self.complete, *self.problems], default=-1)


def sidecar_for(h5_path: Path, ids: list[str], sha256: str, size: int, failures: list[dict],
                **extra: Any) -> dict[str, Any]:
    return {"format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION, "shard": h5_path.stem,
            "ids": list(ids), "ids_sha256": ids_digest(ids), "n": len(ids), "sha256": sha256, "bytes": size,
            "failures": failures, "created": now_iso(), **extra}


def publish_shard(tmp_h5: Path, final_h5: Path, ids: list[str], failures: list[dict], **extra: Any) -> dict:
    """Make a fully written ``tmp_h5`` the shard ``final_h5``: fsync, hash, rename, then sidecar.

    The sidecar is written only after the .h5 is in place, so a sidecar always describes
    bytes that reached the disk; a crash in between leaves an .h5 without sidecar, which
    the next run treats as incomplete.
    """
    fd = os.open(tmp_h5, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    digest = sha256_file(tmp_h5)
    size = tmp_h5.stat().st_size
    _crash_point("shard-tmp-written")
    os.replace(tmp_h5, final_h5)
    fsync_dir(final_h5.parent)
    _crash_point("shard-replaced")
    sidecar = sidecar_for(final_h5, ids, digest, size, failures, **extra)
    try:
        write_json(final_h5.with_suffix(".json"), sidecar)
    except Exception:  # e.g. CacheFull: a shard without sidecar is incomplete anyway; leave no partial file
        final_h5.unlink(missing_ok=True)
        raise
    _crash_point("shard-published")  # complete; the next shard has not started
    return sidecar


_CRASH_COUNTS: dict[str, int] = {}


def _crash_point(name: str) -> None:
    """Crash tests only: ``MER_CRASH_AT=<name>[:k]`` SIGKILLs this process the k-th time (default
    1st) it reaches ``name``, to prove that a crash at that exact moment is recovered from.

    Points: ``shard-tmp-written`` (a shard's .h5 is written and fsynced under its tmp name, not
    yet renamed), ``shard-replaced`` (renamed into place, no sidecar yet), ``shard-published``
    (sidecar written: between two shards), and ``write-<file name>`` inside every
    :func:`write_atomic` after the tmp file is fsynced and before its rename (``write-spec.json``,
    ``write-failures.jsonl``, ``write-plan.json``, ``write-shard-00000.json``).
    """
    spec = os.environ.get("MER_CRASH_AT")
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if _CRASH_COUNTS[name] == int(nth or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def read_sidecar(path: Path) -> dict[str, Any]:
    """A parsed and self-consistent sidecar, or ValueError saying what is wrong."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    for key in ("ids", "ids_sha256", "n", "sha256", "bytes", "failures"):
        if key not in data:
            raise ValueError(f"missing key {key!r}")
    ids = data["ids"]
    if not isinstance(ids, list) or len(ids) != data["n"] or ids_digest(ids) != data["ids_sha256"]:
        raise ValueError("ids do not match n / ids_sha256")
    return data


def check_shard(directory: Path, index: int, verify: bool = True) -> ShardRecord | ShardProblem:
    """Is shard ``index`` complete? ``verify=False`` checks only the size (cheap: readers)."""
    h5 = directory / f"{shard_name(index)}.h5"
    side = directory / f"{shard_name(index)}.json"
    if not side.exists():
        return ShardProblem(index, h5, "no-sidecar", "no sidecar: the write was interrupted before it finished")
    try:
        meta = read_sidecar(side)
    except (OSError, ValueError) as exc:
        return ShardProblem(index, side, "bad-sidecar", f"unreadable sidecar: {exc}")
    ids = meta["ids"]
    if not h5.exists():
        return ShardProblem(index, h5, "missing-h5", "sidecar without its .h5", ids=ids)
    size = h5.stat().st_size
    if size != meta["bytes"]:
        return ShardProblem(index, h5, "size", f"size {size} != {meta['bytes']} in sidecar", ids=ids,
                            expected=str(meta["bytes"]), actual=str(size))
    if verify:
        digest = sha256_file(h5)
        if digest != meta["sha256"]:
            return ShardProblem(index, h5, "corrupt", "sha256 mismatch", ids=ids, expected=meta["sha256"],
                                actual=digest)
    return ShardRecord(index=index, ids=ids, failures=list(meta["failures"]), sha256=meta["sha256"],
                       bytes=meta["bytes"])


def shard_indices(directory: Path) -> list[int]:
    found = set()
    if directory.is_dir():
        for entry in os.scandir(directory):
            match = SHARD_RE.match(entry.name)
            if match:
                found.add(int(match.group(1)))
    return sorted(found)


def scan(directory: Path, verify: bool = True, threads: int = 4) -> ScanResult:
    """Check every shard of an encoder directory (sha256 in parallel threads when verifying)."""
    indices = shard_indices(Path(directory))
    result = ScanResult(spec_problem=spec_problem(Path(directory)))
    if not indices:
        return result
    if verify and len(indices) > 1 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(indices)), thread_name_prefix="mer-verify") as pool:
            checked = list(pool.map(lambda i: check_shard(directory, i, verify), indices))
    else:
        checked = [check_shard(directory, i, verify) for i in indices]
    for item in checked:
        if isinstance(item, ShardRecord):
            result.complete[item.index] = item
        else:
            result.problems[item.index] = item
    return result


def remove_shard(directory: Path, index: int) -> None:
    """Sidecar first: without it the shard is incomplete whatever happens next."""
    (directory / f"{shard_name(index)}.json").unlink(missing_ok=True)
    (directory / f"{shard_name(index)}.h5").unlink(missing_ok=True)


def clean_tmp(directory: Path) -> list[Path]:
    """Delete temporary files left by killed runs. Call only while holding the lock."""
    removed = []
    if directory.is_dir():
        for entry in os.scandir(directory):
            if TMP_MARK in entry.name and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


# --- the plan --------------------------------------------------------------------------------

@dataclass
class Plan:
    """Which shards this run writes (index -> sorted ids), and what it keeps."""

    pending: dict[int, list[str]]
    complete: dict[int, ShardRecord]
    #: shards to delete before extracting: redone (corrupt / retried) or no longer needed
    remove: list[int]

    @property
    def pending_samples(self) -> int:
        return sum(len(v) for v in self.pending.values())


def read_plan(directory: Path) -> dict[int, list[str]]:
    path = Path(directory) / PLAN_NAME
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {int(item["index"]): list(item["ids"]) for item in data["pending"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # an unreadable plan only costs determinism of shard numbers, never correctness


def make_plan(present_ids: Iterable[str], shard_size: int, state: ScanResult, previous: dict[int, list[str]],
              retry_failures: bool = False) -> Plan:
    """Decide the shards of this run (pure function of its inputs, hence deterministic).

    1. complete shards are kept, unless ``retry_failures`` and they hold a failure of a present id;
    2. shards to redo (retried, or corrupt with a readable sidecar) keep their number and ids;
    3. shards of an unfinished previous plan keep their number and ids;
    4. every other present id not in a kept shard is sorted and chunked into new shards numbered
       after the highest shard seen.
    Ids no longer present are dropped from redone/planned shards (we have no row for them).
    """
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    present = set(present_ids)
    complete = dict(state.complete)
    redo: dict[int, list[str]] = {}
    if retry_failures:
        for index, record in list(complete.items()):
            if record.failed_ids & present:
                redo[index] = record.ids
                del complete[index]
    for index, problem in state.problems.items():
        if problem.ids:
            redo[index] = problem.ids
    claimed = {i for record in complete.values() for i in record.ids}
    pending: dict[int, list[str]] = {}

    def claim(index: int, ids: list[str]) -> None:
        keep = sorted(i for i in set(ids) if i in present and i not in claimed)
        if keep:
            pending[index] = keep
            claimed.update(keep)

    for index in sorted(redo):
        claim(index, redo[index])
    for index in sorted(previous):
        if index not in complete and index not in pending:
            claim(index, previous[index])
    rest = sorted(present - claimed)
    start = max([state.highest, *previous, *pending, -1]) + 1
    for k in range(0, len(rest), shard_size):
        pending[start + k // shard_size] = rest[k:k + shard_size]
    remove = sorted(set(state.problems) | (set(state.complete) - set(complete)))
    return Plan(pending=dict(sorted(pending.items())), complete=complete, remove=remove)


def write_plan(directory: Path, plan: Plan) -> None:
    path = Path(directory) / PLAN_NAME
    if plan.pending:
        write_json(path, {"format_version": CACHE_FORMAT_VERSION,
                          "pending": [{"index": i, "ids": ids} for i, ids in plan.pending.items()]})
    else:
        path.unlink(missing_ok=True)


# --- spec.json and failures.jsonl ------------------------------------------------------------

def read_spec(directory: Path) -> dict[str, Any] | None:
    """The parsed spec.json, None when absent; CacheError when a reader could not use it."""
    path = Path(directory) / SPEC_NAME
    if not path.exists():
        return None
    problem = spec_problem(directory)
    if problem:
        raise CacheError(f"{path}: {problem}; remove the file and re-run mer extract to rebuild it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # changed since spec_problem looked at it
        raise CacheError(f"{path}: unreadable spec ({type(exc).__name__}); remove the file and re-run mer extract "
                         f"to rebuild it") from None


def spec_problem(directory: Path) -> str | None:
    """What makes ``spec.json`` unusable for a reader, or None. A reader needs a JSON object
    whose ``format`` (when given) is this cache's, with an encoder ``key`` and, when given, a
    list of valid output specs (a key that is not the directory's name is :func:`check_spec_compatible`'s
    concern: it matters to writers). The detail names positions, never the file's content."""
    directory = Path(directory)
    path = directory / SPEC_NAME
    if not path.exists():
        return "missing: the shards cannot be read without it" if shard_indices(directory) else None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__})"
    try:
        spec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (invalid byte at offset {exc.start})"
    except ValueError as exc:
        return f"not valid JSON ({getattr(exc, 'msg', 'parse error')} at line {getattr(exc, 'lineno', '?')} " \
               f"column {getattr(exc, 'colno', '?')})"
    if not isinstance(spec, dict):
        return f"not a JSON object (a JSON {type(spec).__name__})"
    if "format" in spec and spec["format"] != CACHE_FORMAT:
        return f"its 'format' is not {CACHE_FORMAT!r}"
    if not isinstance(spec.get("key"), str) or not spec["key"]:
        return "it names no encoder 'key'"
    outputs = spec.get("outputs")
    if outputs is None:
        return None  # written before the first shard finished (a killed run): the next extract fills it
    if not isinstance(outputs, list) or not outputs:
        return "'outputs' is not a non-empty list"
    for k, out in enumerate(outputs):
        ok = (isinstance(out, dict) and isinstance(out.get("name"), str) and isinstance(out.get("ragged"), bool)
              and isinstance(out.get("shape"), list)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in out["shape"]))
        if not ok:
            return f"'outputs'[{k}] is not an output spec (name, shape, ragged)"
    return None


def check_spec_compatible(directory: Path, spec: dict | None, key: str, cache_dtype: str) -> None:
    """Refuse to mix features: the directory must hold this encoder, at this cache dtype."""
    if spec is None:
        return
    if spec.get("key") not in (None, key):
        raise CacheError(f"{directory}/spec.json is for encoder {spec.get('key')!r}, not {key!r}: "
                         f"the directory was renamed or copied by hand; remove it")
    old = (spec.get("cache") or {}).get("dtype")
    if old and old != cache_dtype and shard_indices(directory):
        raise CacheError(f"{directory} was built with cache.dtype={old} but the config asks for {cache_dtype}; "
                         f"set cache.dtype={old}, or remove the directory (mer cache gc / rm -r) to rebuild it")


def failure_lines(modality: str, records: Iterable[ShardRecord]) -> list[dict]:
    lines = []
    for record in sorted(records, key=lambda r: r.index):
        for failure in sorted(record.failures, key=lambda f: f["id"]):
            lines.append({**failure, "modality": modality, "shard": record.name})
    return lines


def write_failures(directory: Path, modality: str, records: Iterable[ShardRecord]) -> Path:
    """Rebuild ``failures.jsonl`` from the complete shards' sidecars (consistent after any crash)."""
    path = Path(directory) / FAILURES_NAME
    text = "".join(canonical_json(line, indent=None) + "\n" for line in failure_lines(modality, records))
    write_atomic(path, text.encode("utf-8"))
    return path


# --- whole-cache listing (mer cache ls / verify / gc) -----------------------------------------

@dataclass
class EncoderDirInfo:
    path: Path
    corpus: str
    modality: str
    key: str
    family: str
    samples: int
    failures: int
    shards: int
    bytes: int
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "corpus": self.corpus, "modality": self.modality, "key": self.key,
                "family": self.family, "samples": self.samples, "failures": self.failures, "shards": self.shards,
                "bytes": self.bytes, "status": self.status}


def encoder_dirs(root: str | Path) -> list[Path]:
    """Every ``<root>/<corpus>/<modality>/<key>/`` that looks like an encoder directory."""
    return [d for d in candidate_encoder_dirs(root) if (d / SPEC_NAME).exists() or shard_indices(d)]


def dir_bytes(directory: Path) -> int:
    """Bytes of the cache files (the ``.lock`` and ``.verified.json`` bookkeeping files are not counted)."""
    return sum(e.stat().st_size for e in os.scandir(directory)
               if e.is_file(follow_symlinks=False) and e.name not in BOOKKEEPING)


def describe_dir(directory: Path) -> EncoderDirInfo:
    """Counts from the sidecars (cheap: no hashing); status from spec.json."""
    try:
        spec = read_spec(directory) or {}
    except CacheError:
        spec = {}
    state = scan(directory, verify=False)
    samples = sum(len(r.ids) for r in state.complete.values())
    failures = sum(len(r.failures) for r in state.complete.values())
    status = spec.get("status", "incomplete")
    if state.problems:
        status = "incomplete"
    return EncoderDirInfo(path=directory, corpus=directory.parent.parent.name, modality=directory.parent.name,
                          key=directory.name, family=spec.get("family", "?"), samples=samples, failures=failures,
                          shards=len(state.complete), bytes=dir_bytes(directory), status=status)


def remove_encoder_dir(directory: Path) -> int:
    """Delete an encoder directory; returns the bytes freed. Removes the modality folder if empty."""
    freed = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file() and f.name not in BOOKKEEPING)
    shutil.rmtree(directory)
    parent = directory.parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
    return freed
