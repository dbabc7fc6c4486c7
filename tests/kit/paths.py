"""Where the tests find things: the repository, the tests folder, and ``../shared/data``."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
#: real corpora beside the checkout (absent in a user's clone: the tests that need them skip)
SHARED_DATA = REPO.parent / "shared" / "data"
