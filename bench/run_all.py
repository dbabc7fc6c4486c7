"""`make bench`: run every benchmark script in turn (each prints its tables and writes its JSON
under bench/results/), sized to finish in under 20 minutes on a quiet 2-core CPU.

Each script runs with :data:`DEFAULT_ARGS` (5 repetitions per figure throughout; smaller
clip and sentence counts than the scripts' own defaults; the ablation grid on 2 local Dask
workers; the threads section, an internal question, left out). Extra arguments replace
those defaults (e.g. ``--quick`` for a smoke run). ``bench/finetune.py`` and
``bench/ravdess_smoke.py`` run separately."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

#: finetune.py (fine-tuning vs cached features, ~4 min) is not part of the 20-minute suite:
#: run it on its own, ``python bench/finetune.py``
SCRIPTS = ("extract.py", "train.py")
DEFAULT_ARGS: dict[str, list[str]] = {
    "extract.py": ["--clips", "6", "--sentences", "300"],
    "train.py": ["--only", "epoch,ablate,bytes", "--ablate-workers", "2"],
}


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for name in SCRIPTS:
        print(f"\n===== bench/{name}", flush=True)
        start = time.perf_counter()
        args = argv or DEFAULT_ARGS[name]
        print(f"      args: {' '.join(args) or '(none)'}", flush=True)
        rc = subprocess.call([sys.executable, str(here / name), *args])
        print(f"===== bench/{name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
