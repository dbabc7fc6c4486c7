"""`make bench`: run every benchmark script in turn (each prints its tables and writes its JSON
under bench/results/). Extra arguments (e.g. --quick, --reps 5) go to extract.py and train.py;
finetune.py runs with its own defaults."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = ("extract.py", "train.py", "finetune.py")
TAKES_ARGS = {"extract.py", "train.py"}


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for name in SCRIPTS:
        print(f"\n===== bench/{name}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(here / name), *(argv if name in TAKES_ARGS else [])])
        print(f"===== bench/{name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
