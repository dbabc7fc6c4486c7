#!/usr/bin/env python
"""Benchmark of MPUC-MER pre-training: where an epoch's time goes, and the view builder.

    python bench/mpuc_pretrain.py                # 5 reps, RAVDESS-sized (1,080 clips, mel TCN + eGeMAPS MLP)
    python bench/mpuc_pretrain.py --landmarks    # + 29.97 fps landmarks (ST-GCN)
    python bench/mpuc_pretrain.py --quick        # smoke run: 1 rep, 48 clips, small encoders

Sections (``--only``; every figure is the median [min-max] of ``--reps`` repetitions, the
variants of one comparison interleaved):

1. ``views``: building the two time-aligned views of every batch of one epoch. ``batched``:
   :func:`mer.train.pretrain.view_inputs` (one window draw and one gather per modality per
   batch, on the tensors). ``per-sample``: the loop a Dataset's ``__getitem__`` does (the
   original's): per clip, a Python random start, a slice per modality, then padding and
   stacking into the batch. Same windows' statistics, same output shapes.
2. ``epoch``: seconds per pre-training epoch (:func:`mer.train.pretrain.pretrain` with one
   epoch, no validation), after one warm-up epoch, and the share of it that is view
   building (section 1's batched figure over the epoch's batches) vs the encoders'
   forward/backward and the optimiser step.

Inputs are synthetic, shaped like the real thing: clips of 3.0-5.0 s; 128-bin log-mel at
30 fps; 88 eGeMAPS functionals; optionally 51 landmarks × 2 at 29.97 fps. The encoders are
the config's defaults (``--quick``: narrow ones). torch threads: ``--threads`` (default 1).

Results: printed tables and ``bench/results/mpuc_pretrain.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import RESULTS, Stat, loadavg, machine_info, ratio, table, write_json  # noqa: E402

import mer.train.pretrain as P  # noqa: E402
from mer.train.config import MpucConfig, TrainConfig  # noqa: E402
from mer.train.data import ModalityData, TrainData  # noqa: E402
from mer.train.models.mpuc import MPUC  # noqa: E402
from mer.train.sequences import Padded  # noqa: E402

MEL_FPS, FACE_FPS = 30.0, 29.97


def synthetic_corpus(n: int, landmarks: bool, seed: int = 0) -> TrainData:
    """``n`` clips of 3-5 s: mel (128 @ 30 fps), egemaps (88 pooled), optionally face (102 @ 29.97 fps)."""
    rng = np.random.default_rng(seed)
    seconds = rng.uniform(3.0, 5.0, n)
    ones = torch.ones(n, dtype=torch.bool)
    y = torch.as_tensor(rng.integers(0, 8, n))

    def ragged(rate: float, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = np.maximum((seconds * rate).astype(np.int64), 1)
        offsets = torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)]))
        return torch.as_tensor(rng.normal(size=(int(lengths.sum()), dim)), dtype=torch.float32), offsets

    mel, mel_off = ragged(MEL_FPS, 128)
    mods = {"mel": ModalityData("mel", "logmel", "bench", "frames", ones, values=mel, offsets=mel_off,
                                attrs={"hop_seconds": 1 / MEL_FPS}),
            "egemaps": ModalityData("egemaps", "egemaps", "bench", "pooled", ones,
                                    x=torch.as_tensor(rng.normal(size=(n, 88)), dtype=torch.float32))}
    if landmarks:
        face, face_off = ragged(FACE_FPS, 102)
        mods["face"] = ModalityData("face", "landmarks", "bench", "frames", ones, values=face.abs(), offsets=face_off)
    return TrainData([f"c{i}" for i in range(n)], np.array(["train"] * n), [""] * n, [str(c) for c in range(8)],
                     False, y, ones, y, 8, mods, "bench", "<synthetic>", torch.device("cpu"))


def train_config(quick: bool) -> TrainConfig:
    narrow = dict(dim=64, tcn_channels=16, tcn_hidden=32, stgcn_channels=[16, 16]) if quick else {}
    return TrainConfig(model="mpuc", mpuc=MpucConfig(pretrain_epochs=1, select="none", lr_step=0,
                                                     frame_rates={"face": FACE_FPS}, **narrow))


def per_sample_views(data: TrainData, rows: list[int], seconds: float, rates: dict[str, float],
                     rng: random.Random) -> dict[str, torch.Tensor | Padded]:
    """The per-sample reference: what a Dataset's ``__getitem__`` + the default collate do."""
    cuts: dict[str, list[list[torch.Tensor]]] = {m: [] for m in rates}
    for i in rows:
        spans = {m: (int(data.modalities[m].offsets[i]), int(data.modalities[m].offsets[i + 1])) for m in rates}
        duration = min((hi - lo) / rates[m] for m, (lo, hi) in spans.items())
        span = min(seconds, duration)
        starts = [rng.uniform(0.0, max(duration - seconds, 0.0)) for _ in range(2)]
        for m, (lo, hi) in spans.items():
            clip = data.modalities[m].values[lo:hi]
            n = min(max(int(round(span * rates[m])), 1), len(clip))
            views = []
            for t0 in starts:
                start = max(min(int(round(t0 * rates[m])), len(clip) - n), 0)
                views.append(clip[start:start + n])
            cuts[m].append(views)
    out: dict[str, torch.Tensor | Padded] = {}
    for m, per_row in cuts.items():
        width = max(int(round(seconds * rates[m])), 1)
        values = torch.zeros(len(rows), 2, width, per_row[0][0].shape[-1])
        lengths = torch.zeros(len(rows), 2, dtype=torch.long)
        for b, views in enumerate(per_row):
            for v, cut in enumerate(views):
                values[b, v, :len(cut)] = cut
                lengths[b, v] = len(cut)
        out[m] = Padded(values, lengths)
    for m, d in data.modalities.items():
        if d.x is not None:
            out[m] = d.x[torch.as_tensor(rows)]
    return out


def epoch_batches(n: int, batch: int, seed: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[s:s + batch] for s in range(0, n, batch) if len(order[s:s + batch]) >= 2]


def bench_views(data: TrainData, model: MPUC, train: TrainConfig, reps: int) -> dict[str, Stat]:
    mp = train.mpuc
    rates = P.frame_rates(data, mp.frame_rates)
    source = P.view_source(model, data, rates)
    batches = epoch_batches(len(data), mp.batch_size, 0)
    stats = {"batched": Stat(), "per-sample": Stat()}

    def batched() -> None:
        gen = torch.Generator().manual_seed(0)
        for rows in batches:
            P.view_inputs(data, torch.as_tensor(rows), mp.crop_seconds, source, gen)

    def looped() -> None:
        rng = random.Random(0)
        for rows in batches:
            per_sample_views(data, rows, mp.crop_seconds, rates, rng)

    variants = [("batched", batched), ("per-sample", looped)]
    for rep in range(reps):
        for name, fn in variants[rep % 2:] + variants[:rep % 2]:
            start = time.perf_counter()
            fn()
            stats[name].add(time.perf_counter() - start)
    return stats


def bench_epoch(data: TrainData, train: TrainConfig, reps: int) -> Stat:
    torch.manual_seed(0)
    model = MPUC(**MPUC.from_config(train, data.inputs(), data.num_classes))
    P.pretrain(model, data, train, seed=0, progress=False)  # warm-up
    stat = Stat()
    for rep in range(reps):
        start = time.perf_counter()
        P.pretrain(model, data, train, seed=rep + 1, progress=False)
        stat.add(time.perf_counter() - start)
    return stat


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--clips", type=int, default=1080)
    ap.add_argument("--landmarks", action="store_true", help="add 29.97 fps landmarks (ST-GCN)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="views,epoch")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 48 clips, narrow encoders")
    ap.add_argument("--out", default=str(RESULTS / "mpuc_pretrain.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.clips = 1, 48
    torch.set_num_threads(args.threads)
    sections = set(args.only.split(","))
    record: dict = {"machine": machine_info(), "loadavg_start": loadavg(),
                    "args": vars(args), "results": {}}
    data = synthetic_corpus(args.clips, args.landmarks)
    train = train_config(args.quick)
    torch.manual_seed(0)
    model = MPUC(**MPUC.from_config(train, data.inputs(), data.num_classes))
    n_batches = len(epoch_batches(len(data), train.mpuc.batch_size, 0))
    views = None
    if "views" in sections:
        views = bench_views(data, model, train, args.reps)
        speedup = ratio(views["per-sample"], views["batched"])
        print(table(["view builder", "s / epoch", "ms / batch"],
                    [[k, v.fmt(".3f"), v.map(lambda s: 1000 * s / n_batches).fmt(".2f")] for k, v in views.items()]
                    + [["per-sample / batched", speedup.fmt(".1f") + "x", ""]],
                    title=f"views: {n_batches} batches of {train.mpuc.batch_size}, {args.clips} clips"))
        record["results"]["views"] = {k: v.to_dict() for k, v in views.items()} | {"speedup": speedup.to_dict()}
    if "epoch" in sections:
        epoch = bench_epoch(data, train, args.reps)
        rows = [["pre-training epoch", epoch.fmt(".2f")]]
        if views is not None:
            share = Stat([v / e for v, e in zip(views["batched"].values, epoch.values)])
            rows.append(["of which view building (batched)", views["batched"].fmt(".3f") + f" ({100 * share.median:.1f}%)"])
            record["results"]["view_share"] = share.to_dict()
        print(table(["", "seconds"], rows, title=f"epoch: modalities {list(data.modalities)}, threads {args.threads}"))
        record["results"]["epoch_seconds"] = epoch.to_dict()
    record["loadavg_end"] = loadavg()
    path = write_json(args.out, record)
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
