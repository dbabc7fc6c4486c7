"""Why a path named in a manifest cannot be read as a regular file, in words of its own.

Why a module: "file not found" for a directory, a symlink loop, a FIFO or ``/dev/zero``, and
libsndfile's "System error" for a file without read permission, sent users looking for the
wrong problem. One check, used by every reader of manifest paths, names the real one. It
looks at the path's type before opening anything (opening a FIFO would block; reading
``/dev/zero`` never ends) and never reads the file's content.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def unreadable_reason(path: str | Path, kind: str = "file") -> str | None:
    """None when ``path`` is a regular file this process can open, else why not (``kind``
    names what was expected, e.g. "audio file")."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{kind} not found: a symbolic link whose target does not exist"
        return f"{kind} not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symbolic link loop: the path never reaches {_a(kind)}"
        if exc.errno == errno.EACCES:
            return "permission denied: a folder on the path cannot be searched"
        if exc.errno == errno.ENOTDIR:
            return f"{kind} not found: a part of the path is a file, not a folder"
        return f"cannot look up the {kind}: {exc.strerror or type(exc).__name__}"
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        return f"is a directory, not {_a(kind)}"
    if stat.S_ISFIFO(mode):
        return f"is a named pipe (FIFO), not a regular {kind}"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"is a device file, not a regular {kind}"
    if stat.S_ISSOCK(mode):
        return f"is a socket, not a regular {kind}"
    if not stat.S_ISREG(mode):
        return f"is not a regular {kind}"
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        return f"permission denied: the {kind} is not readable by this user"
    except OSError as exc:
        return f"cannot open the {kind}: {exc.strerror or type(exc).__name__}"
    return None


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
