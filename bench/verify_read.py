#!/usr/bin/env python
"""What verifying shards on read costs: opening a ``FeatureStore`` with and without the sha256
check, on a cache of ``--samples`` samples (default 10,000) in three sizes of cache.

    python bench/verify_read.py               # 5 reps, 10,000 samples, the three profiles
    python bench/verify_read.py --quick       # smoke run: 1 rep, 64 samples (figures meaningless)
    python bench/verify_read.py --profiles text --reps 9

Profiles (float16, ``cache.shard_size`` 256, written with the cache's own writer
``write_h5`` + ``publish_shard``, so the files are what ``mer extract`` writes):

* ``text``: one pooled (384,) vector per sample (MiniLM-L6 sized);
* ``hf-audio``: all 13 hidden states (13, 768) per sample (Wav2Vec2-base, ``layers: all``);
* ``logmel``: a ragged (T, 64) sequence per sample, T uniform in 100-500 frames (1-5 s at 10 ms).

Variants, interleaved in a rotating order per repetition:

* ``size only``: ``FeatureStore(dir, verify=False)``: sidecars, sizes, the ids index;
* ``first open``: a process that has verified nothing and no ``.verified.json``: every shard hashed;
* ``record``: a new process with the record written by an earlier one: stat() per shard, no hashing;
* ``same process``: a second open in a process that already verified: no hashing, no record read.

The shards are in the page cache (just written or read), so ``first open`` is hashing speed, not
disk speed; on a cold cache add the time to read the bytes once (which the first ``get`` would
pay anyway). Results: printed table and ``bench/results/verify_read.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import RESULTS, Stat, human_bytes, loadavg, machine_info, table, timed, write_json  # noqa: E402

from mer.features.base import OutputSpec  # noqa: E402
from mer.pipeline import read_verify  # noqa: E402
from mer.pipeline.cache import publish_shard, shard_name, tmp_path  # noqa: E402
from mer.pipeline.shard import assemble, write_h5  # noqa: E402
from mer.pipeline.store import FeatureStore  # noqa: E402

PROFILES: dict[str, OutputSpec] = {
    "text": OutputSpec("pooled", (384,)),
    "hf-audio": OutputSpec("hidden", (13, 768)),
    "logmel": OutputSpec("frames", (64,), ragged=True),
}
SHARD_SIZE = 256
VARIANTS = ("size only", "first open", "record", "same process")


def build_cache(directory: Path, profile: str, samples: int, seed: int = 0) -> int:
    """Write ``samples`` samples of ``profile`` as complete shards; returns the bytes written."""
    spec = PROFILES[profile]
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = [f"s{k:06d}" for k in range(samples)]
    for index, start in enumerate(range(0, samples, SHARD_SIZE)):
        chunk = ids[start:start + SHARD_SIZE]
        results = {}
        for sample_id in chunk:
            shape = ((int(rng.integers(100, 501)), *spec.shape) if spec.ragged else spec.shape)
            results[sample_id] = {spec.name: rng.standard_normal(shape).astype(np.float16)}
        data = assemble(chunk, results, [spec], "float16")
        final = directory / f"{shard_name(index)}.h5"
        tmp = tmp_path(final)
        write_h5(tmp, data, [spec], {"encoder_key": directory.name, "family": "bench", "modality": profile,
                                     "corpus": "bench"}, "float16")
        publish_shard(tmp, final, data.ids, [])
    from mer.pipeline.cache import write_json as write_cache_json
    from mer.pipeline.shard import spec_to_dict

    write_cache_json(directory / "spec.json", {"format": "mer-feature-cache", "key": directory.name,
                                               "modality": profile, "outputs": [spec_to_dict(spec, "float16")],
                                               "cache": {"dtype": "float16", "shard_size": SHARD_SIZE}})
    return sum(p.stat().st_size for p in directory.glob("shard-*.h5"))


def variant(name: str, directory: Path) -> Callable[[], Any]:
    record = directory / read_verify.RECORD_NAME

    def size_only() -> Any:
        return FeatureStore(directory, verify=False)

    def first_open() -> Any:
        read_verify.forget_verified()
        record.unlink(missing_ok=True)
        return FeatureStore(directory)

    def with_record() -> Any:  # measure() has an earlier "process" write the record first
        read_verify.forget_verified()
        return FeatureStore(directory)

    def same_process() -> Any:
        return FeatureStore(directory)

    return {"size only": size_only, "first open": first_open, "record": with_record,
            "same process": same_process}[name]


def measure(directory: Path, reps: int) -> dict[str, Stat]:
    stats = {v: Stat() for v in VARIANTS}
    FeatureStore(directory)  # warm the page cache and this process's verification
    for rep in range(reps):
        order = VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)]
        for name in order:
            if name == "record":  # its setup (an earlier process's record) is not timed
                read_verify.forget_verified()
                FeatureStore(directory)
            if name == "same process":
                FeatureStore(directory)
            seconds, _ = timed(variant(name, directory))
            stats[name].add(seconds)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 64 samples")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5; --quick: 1)")
    parser.add_argument("--samples", type=int, default=None, help="samples per cache (default 10000; quick 64)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help=f"subset of {','.join(PROFILES)}")
    parser.add_argument("--out", default=str(RESULTS / "verify_read.json"), help="JSON record path")
    parser.add_argument("--keep", action="store_true", help="keep the temporary caches (path printed)")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 5)
    samples = args.samples or (64 if args.quick else 10_000)
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        parser.error(f"unknown profile(s) {unknown}; choose from {list(PROFILES)}")
    record: dict[str, Any] = {"machine": machine_info(), "samples": samples, "reps": reps, "quick": args.quick,
                              "shard_size": SHARD_SIZE, "profiles": {}}
    work = Path(tempfile.mkdtemp(prefix="mer-verify-bench-"))
    rows = []
    try:
        for profile in profiles:
            directory = work / profile / f"bench-{profile}"
            size = build_cache(directory, profile, samples)
            stats = measure(directory, reps)
            shards = -(-samples // SHARD_SIZE)
            record["profiles"][profile] = {"bytes": size, "shards": shards,
                                           "seconds": {k: v.to_dict() for k, v in stats.items()}}
            rows.append([profile, human_bytes(size), shards, *(stats[v].fmt(".3f") for v in VARIANTS)])
    finally:
        if args.keep:
            print(f"caches kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    record["machine"]["loadavg_end"] = loadavg()
    path = write_json(args.out, record)
    print(table(["profile", "shard bytes", "shards", *(f"{v} (s)" for v in VARIANTS)], rows,
                title=f"FeatureStore open, {samples} samples, median [min-max] of {reps} rep(s); "
                      f"load average {record['machine'].get('loadavg_start')} -> {record['machine']['loadavg_end']}"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
