"""The one table that turns a user's problem into a message and an exit code.

Every command raises; none prints its own error or calls ``sys.exit`` for these. The ``mer``
group catches what is listed here, prints ``error: <message>`` on stderr and exits with the
code. Anything else is a bug in ``mer`` and keeps its traceback.
"""

from __future__ import annotations

from mer.features.base import EncoderUnavailable
from mer.pipeline.adapters.base import LayoutError
from mer.pipeline.cache import CacheError
from mer.pipeline.cache_lock import CacheLocked
from mer.pipeline.config_schema import ConfigError
from mer.pipeline.csd import CsdError
from mer.pipeline.manifest import ManifestError
from mer.train.errors import DataError, TrainingError
from mer.train.stats import StatsError

#: more failed samples than --max-failures allows (see the modality's failures.jsonl)
EXIT_FAILURES = 1
#: a config, manifest, cache or data problem the user can fix
EXIT_USER_ERROR = 2
#: EX_TEMPFAIL: another process is writing the same encoder directory (retry later, or --wait)
EXIT_LOCKED = 75

#: exception type -> exit code; the first match wins (CacheLocked before the general errors)
USER_ERRORS: tuple[tuple[type[BaseException], int], ...] = (
    (CacheLocked, EXIT_LOCKED),
    (ConfigError, EXIT_USER_ERROR),
    (ManifestError, EXIT_USER_ERROR),
    (LayoutError, EXIT_USER_ERROR),
    (CacheError, EXIT_USER_ERROR),
    (EncoderUnavailable, EXIT_USER_ERROR),
    (CsdError, EXIT_USER_ERROR),
    (DataError, EXIT_USER_ERROR),
    (TrainingError, EXIT_USER_ERROR),
    (StatsError, EXIT_USER_ERROR),
)


def exit_code(exc: BaseException) -> int | None:
    """The exit code of a user error, None for anything else."""
    for cls, code in USER_ERRORS:
        if isinstance(exc, cls):
            return code
    return None
