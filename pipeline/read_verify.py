"""Readers verify the shards they read: sha256 against the sidecar, once per shard per process.

Why on the read side: ``mer extract`` and ``mer cache verify`` always hash every shard, but a
byte that flips after extraction (a bad disk, a copy gone wrong, a hand edit) would otherwise be
trained on silently. Every reader of the cache (:class:`mer.pipeline.store.FeatureStore`, hence
``mer train``, ``evaluate``, ``ablate``, ``finetune``) goes through :func:`verify_for_read`.

Hashing is paid at most once per shard per process (:data:`_VERIFIED`), and a record in the
encoder directory (:data:`RECORD_NAME`) lets a later process skip a shard whose size, mtime,
ctime and inode are those it had when it was hashed and whose sidecar still names the same
sha256. The ctime matters: a program can put a file's mtime back after writing into it, but
not its ctime. What the record cannot see is damage that changes none of these (the disk itself
flipping a bit); ``mer cache verify`` and ``mer extract`` always re-hash everything for that.
Writing the record is optional: a read-only cache is verified by hashing in every process.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mer.pipeline.cache import (BOOKKEEPING, CACHE_FORMAT_VERSION, ScanResult, ShardProblem, ShardRecord, canonical_json, scan,
                                sha256_file, shard_name, write_atomic)

log = logging.getLogger("mer.store")

RECORD_NAME = BOOKKEEPING[1]


@dataclass(frozen=True)
class ShardIdentity:
    """What must not change for an earlier verification to still hold."""

    path: str
    bytes: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    sha256: str  # the sidecar's

    @classmethod
    def of(cls, h5: Path, sha256: str) -> "ShardIdentity":
        st = h5.stat()
        return cls(str(h5.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha256)

    def entry(self) -> dict:
        return {"bytes": self.bytes, "mtime_ns": self.mtime_ns, "ctime_ns": self.ctime_ns, "inode": self.inode,
                "sha256": self.sha256}


#: shards this process has hashed and found equal to their sidecar
_VERIFIED: set[ShardIdentity] = set()


def forget_verified() -> None:
    """Forget this process's verifications (tests: behave like a new process)."""
    _VERIFIED.clear()


def read_record(directory: Path) -> dict[str, dict]:
    """The verification record (shard name -> identity entry); empty when absent or unreadable
    (an unreadable record only costs re-hashing)."""
    try:
        data = json.loads((directory / RECORD_NAME).read_text(encoding="utf-8"))
        shards = data["shards"]
        return shards if isinstance(shards, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_record(directory: Path, identities: dict[str, ShardIdentity]) -> None:
    data = {"format_version": CACHE_FORMAT_VERSION, "shards": {k: v.entry() for k, v in sorted(identities.items())}}
    try:
        write_atomic(directory / RECORD_NAME, canonical_json(data).encode("utf-8"))
    except OSError as exc:  # read-only cache, or an extract cleaning tmp files: the next reader hashes again
        log.info("%s: could not record the shard verification (%s); later processes will hash again",
                 directory, exc.strerror or exc)


def record_extracted(directory: Path, records: Iterable[ShardRecord]) -> None:
    """After ``mer extract``: it hashed every complete shard itself (verified the kept ones, hashed
    the new ones before publishing them), so the record can say so and the first reader need not
    hash them again."""
    write_record(directory, {r.name: ShardIdentity.of(directory / f"{r.name}.h5", r.sha256) for r in records})


def verify_for_read(directory: Path, threads: int = 4) -> ScanResult:
    """:func:`mer.pipeline.cache.scan` for a reader: sizes always, sha256 of each complete shard
    unless this process or the record already verified it unchanged. A mismatch becomes a
    ``corrupt`` problem, exactly as a full scan reports it."""
    directory = Path(directory)
    state = scan(directory, verify=False)
    record = read_record(directory)
    todo: list[tuple[ShardRecord, ShardIdentity]] = []
    trusted: dict[str, ShardIdentity] = {}
    for index, shard in sorted(state.complete.items()):
        identity = ShardIdentity.of(directory / f"{shard.name}.h5", shard.sha256)
        if identity in _VERIFIED or record.get(shard.name) == identity.entry():
            _VERIFIED.add(identity)
            trusted[shard.name] = identity
        else:
            todo.append((shard, identity))
    if not todo:
        return state

    def check(item: tuple[ShardRecord, ShardIdentity]) -> str:
        return sha256_file(item[1].path)

    if len(todo) > 1 and threads > 1:
        with ThreadPoolExecutor(min(threads, len(todo)), thread_name_prefix="mer-verify") as pool:
            digests = list(pool.map(check, todo))
    else:
        digests = [check(item) for item in todo]
    for (shard, identity), digest in zip(todo, digests):
        if digest == shard.sha256:
            _VERIFIED.add(identity)
            trusted[shard.name] = identity
        else:
            del state.complete[shard.index]
            state.problems[shard.index] = ShardProblem(
                shard.index, directory / f"{shard_name(shard.index)}.h5", "corrupt", "sha256 mismatch",
                ids=shard.ids, expected=shard.sha256, actual=digest)
    write_record(directory, trusted)
    return state
