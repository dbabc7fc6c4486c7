#!/usr/bin/env python
"""Speed of the ``face-landmarks`` encoder (dlib HOG detection + 68-point fit, tracked) on this CPU.

    python bench/face.py              # 5 repetitions over 18 clips (the real face clips twice)
    python bench/face.py --quick      # smoke run: 1 repetition, 3 clips, 10 fps: checks the script, not the speed
    python bench/face.py --reps 9 --clips 36 --only encoder

What it measures (each figure: median [min-max] over ``--reps`` repetitions, variants interleaved):

1. ``encoder``: the encoder's ``prepare`` (decode + detect + fit + normalise; all the work) one clip
   at a time in this process, with ``detect_every`` 1 (the detector on every frame) and 5 (the
   default: detection every 5th frame, a small verifying detection around the tracked face in
   between): frames/s and clips/s.
2. ``extract``: ``mer extract`` (the CLI, in a subprocess) on a manifest of the same clips, single
   process (``--workers 0``: prefetch threads) and ``--workers 2`` (a dask LocalCluster of two
   processes): clips/s and frames/s from the seconds ``mer extract`` reports for the modality
   (which exclude interpreter start-up and cluster start), and the subprocess's wall time.

Inputs: the real face clips of ``../shared/data/face-video`` (CREMA-D 480x360, RAVDESS 640x480,
two 640x360 clips; each at most its first 4 s), cycled to ``--clips`` rows of a manifest; when that
folder is absent, synthetic 320x288 clips of a moving real face (scikit-image's astronaut). Frames
are sampled at ``--fps`` (30, the encoder's default). Everything generated lives in a temporary
folder removed at the end. Results: printed tables and ``bench/results/face.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, Stat, loadavg, machine_info, run_child, table, usable_cpus, write_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FACE_VIDEO = REPO.parent / "shared" / "data" / "face-video"
REAL = [f"1001_DFA_{e}_XX.flv" for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")] + [
    "01-01-07-02-02-01-01_1.mp4", "single_face.mp4", "WolfgangLanger_Pexels.mp4"]
MAX_SECONDS = 4.0
SECTIONS = ("encoder", "extract")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def clip_rows(work: Path, n: int) -> list[dict]:
    """``n`` manifest rows cycling over the real clips (or synthetic ones), each at most MAX_SECONDS."""
    from mer.features.video_io import video_info

    if FACE_VIDEO.is_dir():
        sources = [FACE_VIDEO / name for name in REAL]
    else:
        sys.path.insert(0, str(REPO / "tests"))
        from kit.video import moving_face_frames, write_video

        sources = [write_video(work / f"synthetic{k}.mp4", moving_face_frames(60, (1 + k, 1)), fps=30) for k in range(3)]
    rows = []
    for i in range(n):
        path = sources[i % len(sources)]
        rows.append({"id": f"c{i:03d}_{path.stem}", "label": "", "group": "g", "split": "", "video": str(path),
                     "start": 0.0, "end": min(MAX_SECONDS, video_info(path).duration)})
    return rows


def section_encoder(rows: list[dict], fps: float, reps: int, record: dict) -> str:
    from mer.features.face_landmarks import FaceLandmarksEncoder, Options

    variants = {f"detect_every={k}": FaceLandmarksEncoder(Options(fps=fps, detect_every=k)) for k in (1, 5)}
    for enc in variants.values():
        enc.load(None)
    stats = {name: Stat() for name in variants}
    frames = 0
    names = list(variants)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:  # rotating order
            start = time.perf_counter()
            total = sum(len(variants[name].prepare(row)["valid"]) for row in rows)
            stats[name].add(time.perf_counter() - start)
            frames = total
        log(f"encoder: repetition {rep + 1}/{reps} done")
    lines = []
    record["encoder"] = {"clips": len(rows), "frames": frames, "fps": fps}
    for name, st in stats.items():
        lines.append([name, st.fmt(), st.map(lambda s: frames / s).fmt(".1f"), st.map(lambda s: len(rows) / s).fmt(".2f")])
        record["encoder"][name] = {"seconds": st.to_dict(), "frames_per_s": st.map(lambda s: frames / s).to_dict(),
                                   "clips_per_s": st.map(lambda s: len(rows) / s).to_dict()}
    return table(["variant", "seconds", "frames/s", "clips/s"], lines,
                 title=f"1. face-landmarks prepare(), one clip at a time, one process ({len(rows)} clips, "
                       f"{frames} frames at {fps:g} fps)")


def section_extract(work: Path, rows: list[dict], fps: float, reps: int, frames: int | None, record: dict) -> str:
    import pandas as pd
    import yaml

    manifest = work / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    variants = {"--workers 0": 0, "--workers 2": 2}
    stats = {name: Stat() for name in variants}
    walls = {name: Stat() for name in variants}
    names = list(variants)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for rep in range(reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            cache = work / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            config = work / "config.yaml"
            config.write_text(yaml.safe_dump({
                "dataset": {"name": "generic", "manifest": str(manifest), "corpus": "bench"},
                "cache": {"root": str(cache)},
                "features": {"face": {"encoder": "face-landmarks", "fps": fps}},
                "extract": {"device": "cpu"}}, sort_keys=False), encoding="utf-8")
            args = [sys.executable, "-m", "mer", "extract", "-c", str(config), "--no-progress"]
            if variants[name]:
                args += ["--workers", str(variants[name])]
            run = run_child(args, env=env)
            out = run.stdout + run.stderr
            if run.returncode != 0:
                raise RuntimeError(f"mer extract failed ({name}):\n{out}")
            found = re.search(r"^face\s+face-landmarks-\w+\s+\S+\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)", out, re.M)
            if found is None or int(found.group(2)) != len(rows) or int(found.group(3)):
                raise RuntimeError(f"mer extract ({name}) did not extract every clip:\n{out}")
            stats[name].add(float(found.group(4)))
            walls[name].add(run.seconds)
        log(f"extract: repetition {rep + 1}/{reps} done")
    lines = []
    record["extract"] = {"clips": len(rows), "frames": frames, "fps": fps}
    for name, st in stats.items():
        per_frame = st.map(lambda s: frames / s).fmt(".1f") if frames else "-"
        lines.append([name, st.fmt(), st.map(lambda s: len(rows) / s).fmt(".2f"), per_frame, walls[name].fmt()])
        record["extract"][name] = {"seconds": st.to_dict(), "clips_per_s": st.map(lambda s: len(rows) / s).to_dict(),
                                   "wall_seconds": walls[name].to_dict()}
        if frames:
            record["extract"][name]["frames_per_s"] = st.map(lambda s: frames / s).to_dict()
    return table(["mer extract", "seconds", "clips/s", "frames/s", "wall s (incl. start-up)"], lines,
                 title=f"2. mer extract, face-landmarks ({len(rows)} clips, seconds as mer extract reports them)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--clips", type=int, default=18)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"sections: {','.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 3 clips, 10 fps: a smoke run, not a measurement")
    parser.add_argument("--out", default=str(RESULTS / "face.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.clips, args.fps = 1, 3, 10.0
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    work = Path(tempfile.mkdtemp(prefix="mer-bench-face-"))
    record = {"benchmark": "face", "quick": args.quick, "machine": machine_info(), "loadavg_start": loadavg(),
              "inputs": "real face-video clips" if FACE_VIDEO.is_dir() else "synthetic astronaut clips",
              "usable_cpus": usable_cpus()}
    tables = []
    try:
        rows = clip_rows(work, args.clips)
        frames = None
        if "encoder" in sections:
            tables.append(section_encoder(rows, args.fps, args.reps, record))
            frames = record["encoder"]["frames"]
        if "extract" in sections:
            tables.append(section_extract(work, rows, args.fps, args.reps, frames, record))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    record["loadavg_end"] = loadavg()
    print("\n\n".join(tables))
    print(f"\nload average: start {record['loadavg_start']}, end {record['loadavg_end']}"
          + ("  (--quick: a smoke run; these figures are not a measurement)" if args.quick else ""))
    print(f"record: {write_json(args.out, record)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
