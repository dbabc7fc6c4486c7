"""One writer per encoder cache directory: an ``flock`` on ``<encoder dir>/.lock``.

Why ``flock`` and not "a lock file exists": the kernel drops an ``flock`` when its holder
dies, even by SIGKILL or a power cut of the process, so a stale ``.lock`` file never blocks
anyone, while a live holder always does. The file also records who holds it (pid, host,
command, start time) so that a refused second ``mer extract`` can say whom to wait for.

The lock file itself is never deleted: a process blocked on the old inode would otherwise
hold a lock nobody else can see. When a directory was removed (``mer cache gc``) while we
waited, :meth:`DirLock.acquire` notices the inode changed and takes the lock again on the
new file.

On NFS, Linux maps ``flock`` onto POSIX byte-range locks (since 2.6.12), which work across
machines when the server supports locking; some FUSE file systems do not support it, and
there the lock only protects against processes on the same machine.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

LOCK_NAME = ".lock"


class CacheLocked(RuntimeError):
    """Another process holds the directory's lock."""

    def __init__(self, directory: Path, holder: dict | None, readers_only: bool = False):
        self.directory = Path(directory)
        self.holder = holder or {}
        self.readers_only = readers_only
        if readers_only:
            message = f"{directory} is being read (mer cache verify); wait for it (or pass --wait)"
        else:
            message = (describe_holder(self.directory, holder)
                       + "; wait for it (or pass --wait), or kill that process")
        super().__init__(message)


def describe_holder(directory: Path, holder: dict | None, readers_only: bool = False) -> str:
    if readers_only:
        return f"{directory} is being read (mer cache verify)"
    if not holder:
        return f"another mer extract (holder unknown) is writing {directory}"
    return (f"another mer extract (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"since {holder.get('started', '?')}) is writing {directory}")


def read_holder(directory: Path) -> dict | None:
    """The holder record written in the lock file, or None if empty/unreadable."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


class DirLock:
    """Exclusive (writer) or shared (reader, e.g. ``mer cache verify``) lock on a directory.

    >>> with DirLock(path):          # raises CacheLocked at once if someone else writes
    ...     ...
    >>> with DirLock(path, wait=True, on_wait=print):   # blocks until free
    ...     ...
    """

    def __init__(self, directory: str | Path, *, shared: bool = False, wait: bool = False,
                 poll_seconds: float = 0.5, on_wait: Callable[[str], None] | None = None,
                 create: bool = True):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.shared = shared
        self.wait = wait
        self.poll_seconds = poll_seconds
        self.on_wait = on_wait
        self.create = create
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "DirLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: already held by this object")
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        announced = False
        while True:
            if self.create:
                self.directory.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_CREAT if self.create else os.O_RDONLY
            fd = os.open(self.path, flags | getattr(os, "O_CLOEXEC", 0), 0o644)
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = read_holder(self.directory)
                readers_only = not self.shared and self._only_readers()
                if not self.wait:
                    raise CacheLocked(self.directory, holder, readers_only) from None
                if not announced and self.on_wait is not None:
                    self.on_wait(describe_holder(self.directory, holder, readers_only) + "; waiting (--wait) ...")
                    announced = True
                time.sleep(self.poll_seconds)
                continue
            # the directory may have been removed and re-created while we waited: make
            # sure we locked the file that is there now, not an unlinked inode
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                if not self.create:
                    raise FileNotFoundError(f"{self.directory} was removed")
                continue
            self._fd = fd
            break
        if not self.shared:
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": " ".join(sys.argv),
                "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
            }
            data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
        return self

    def _only_readers(self) -> bool:
        """After an exclusive request failed: is the lock held shared (readers), not by a writer?"""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
