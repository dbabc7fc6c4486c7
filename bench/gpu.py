#!/usr/bin/env python
"""The GPU benchmark: ``mer`` on one CUDA GPU against the loops peers write, in one run.

    python bench/gpu.py                 # one CUDA GPU, full sizes; designed for < 8 min on one H200
    python bench/gpu.py --dry-run       # CPU, tiny sizes: every code path, no figure (the tests run it)
    python bench/gpu.py --only speech,text --out /tmp/gpu.json

Sections (``--only``), each variant timed once with the device synchronised, its peak device
memory recorded, and, in a separate profiled pass over a subset, the GPU busy fraction:

* ``speech``: 1,000 synthetic speech-like 48 kHz FLAC clips of 2-12 s; Wav2Vec2 with
  wav2vec2-base's and wav2vec2-large-lv60's shapes (random weights, ``save_pretrained``).
  ``naive``: the per-clip loop (soundfile + soxr + the processor per clip, fp32, batch 1, model
  and inputs moved with ``.to("cuda")``); ``mer``: :func:`mer.pipeline.extract.extract` on a real
  config (length-bucketed batches, bf16 autocast, pinned host buffers, prefetching decode),
  and the same with ``extract.io_threads`` = cores - 2. Clips/s, audio-seconds/s, model FLOP/s
  as a share of the bf16 (and fp32) matmul FLOP/s measured at the start of the run;
* ``text``: 20,000 generated sentences, a BERT-base-shaped model (random weights, a real
  WordPiece tokenizer over the generator's words), the same comparison;
* ``train``: a 100,000-sample float16 cache (768-d text, 1024-d audio, 19-d bio, written by
  ``extract()`` through ``bench/benchkit/synth.py``), then ``concat`` and LMR-CL (the paper's
  size, ``LmrConfig()``; ``--dry-run``: the demo's): ``fit()`` epochs on the GPU, and the trainer's optimiser step on the
  GPU vs on every CPU core (the CPU epoch is projected from ``--cpu-batches`` steps).

Results: printed tables and one JSON record (``bench/results/gpu.json``; partial records are
written after each section, so a run cut short still leaves what it measured). A section that
fails is recorded with its traceback, the others still run, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import extract as bx  # noqa: E402  (bench/extract.py: inputs, models, the naive loops, run_mer)
import train as bt  # noqa: E402  (bench/train.py: the training cache, models and optimiser step)
from benchkit.gpu_measure import Measured, busy_fraction, matmul_peak, measure, speech_flops  # noqa: E402
from common import RESULTS, human_bytes, loadavg, machine_info, table, usable_cpus, write_json  # noqa: E402

from mer.config import load_config  # noqa: E402

SECTIONS = ("speech", "text", "train")


@dataclass(frozen=True)
class Sizes:
    clips: int = 1000
    clip_seconds: tuple[float, float] = (2.0, 12.0)
    #: the per-clip loop runs on the first N clips (random lengths: a fair sample); rates are compared
    naive_clips: int = 1000
    #: clips of the profiled pass that gives the busy fraction
    profile_clips: int = 150
    speech_models: tuple[str, ...] = ("base", "large")
    sentences: int = 20000
    naive_sentences: int = 4000
    profile_sentences: int = 1000  # the per-sentence loop launches many kernels: keep its trace small
    text_model: str = "base"
    train_samples: int = 100_000
    train_batch: int = 256
    #: timed fit() epochs per model on the GPU, after one warm-up epoch
    train_epochs: int = 2
    #: optimiser steps timed per model and device (the CPU epoch is projected from them)
    cpu_batches: int = 30
    matmul_n: int = 8192
    #: distinct clip lengths up to which speech FLOPs are counted one by one (else fitted)
    exact_flops: int = 12
    #: LMR-CL's size: paper (LmrConfig(): hidden 256, 32 tokens, 3 layers, FFN 1024) | demo (configs/demo.yaml)
    lmr: str = "paper"


FULL = Sizes()
DRY = Sizes(clips=6, clip_seconds=(0.4, 1.0), naive_clips=4, profile_clips=2, speech_models=("tiny",),
            sentences=24, naive_sentences=8, profile_sentences=8, text_model="tiny", train_samples=400,
            train_batch=32, train_epochs=1, cpu_batches=2, matmul_n=128, lmr="demo")


@dataclass
class Context:
    device: Any  # torch.device
    sizes: Sizes
    work: Path
    out: Path
    cpus: int
    peaks: dict[str, dict] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    bench: Any = None  # bench/extract.py's Bench: writes the extraction configs
    clips: list[dict] = field(default_factory=list)  # the speech corpus (written before CUDA starts)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def save(self) -> None:
        write_json(self.out, self.record)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- inputs ----------------------------------------------------------------------------------

def _write_clip(job: tuple[str, int, float, float]) -> dict:
    import soundfile as sf

    folder, k, low, high = job
    rng = np.random.default_rng([7, k])
    path = Path(folder) / f"clip{k:04d}.flac"
    sf.write(path, bx.speech_like(rng.uniform(low, high), bx.SOURCE_SR, rng), bx.SOURCE_SR, subtype="PCM_16",
             format="FLAC")
    return {"id": f"clip{k:04d}", "audio": str(path)}


def make_clips(folder: Path, n: int, seconds: tuple[float, float], workers: int) -> list[dict]:
    """``n`` mono 16-bit 48 kHz FLAC clips of uniformly random length, written by ``workers``
    forked processes (synthesising 1,000 clips of up to 12 s takes minutes on one core). Called
    before CUDA is initialised: a fork after it is unsafe."""
    import multiprocessing

    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(str(folder), k, seconds[0], seconds[1]) for k in range(n)]
    if workers <= 1:
        return [_write_clip(j) for j in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_write_clip, jobs, chunksize=max(1, min(8, n // workers))))


def save_bert(folder: Path, size: str, seed: int = 0) -> Path:
    """Random-weight BERT saved with ``save_pretrained``: ``base`` is bert-base's shape (12 x 768,
    12 heads, FFN 3072, 30,522 tokens), ``tiny`` 2 x 32. The tokenizer is a real WordPiece
    tokenizer whose vocabulary holds every word ``bench/extract.py`` generates sentences from
    (so a word is one token, as common words are in bert-base-uncased), letters and word pieces,
    padded with ``[unusedN]`` to the model's vocabulary size."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "!", *dict.fromkeys(bx.WORDS), *letters,
             *(f"##{c}" for c in letters)]
    # the defaults ARE bert-base-uncased's shape (its vocabulary size for both sizes)
    config = BertConfig() if size == "base" else BertConfig(hidden_size=32, num_hidden_layers=2,
                                                            num_attention_heads=4, intermediate_size=48)
    vocab += [f"[unused{k}]" for k in range(config.vocab_size - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(folder)
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


# --- one comparison: the naive loop vs mer extract ---------------------------------------------

@dataclass
class Workload:
    """One model over one corpus, both sides."""

    section: str  # speech | text
    model: str  # e.g. wav2vec2-large
    modality: str  # the features key: audio | text
    rows: list[dict]
    feature: dict  # the features section of the config (with "modality")
    flops: dict[str, int]  # per sample id: forward FLOPs at its length (no padding)
    amount: dict[str, float]  # per sample id: audio seconds or tokens
    unit: str  # "audio-s" | "tokens"
    naive: Callable[[list[dict], Path], np.ndarray]  # the per-item loop over rows, returns the vectors
    naive_items: int
    profile_items: int


def planned_batches(ctx: Context, config: Any, modality: str, rows: list[dict]) -> list[int]:
    """Batch sizes ``extract()`` runs: ids sorted and cut into shards of ``cache.shard_size``
    (``make_plan``), each shard batched by the encoder's policy on this device (``run_shard``).
    Needs the encoder's config/tokenizer only, not its weights."""
    from mer.features.batching import make_batches
    from mer.features.registry import build_encoder

    encoder = build_encoder(config.features[modality])
    encoder.device = ctx.device  # the batch policy follows the device (what load() sets)
    ids = sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    size = config.cache.shard_size
    sizes = []
    for start in range(0, len(ids), size):
        costs = {i: float(encoder.cost(by_id[i])) for i in ids[start:start + size]}
        sizes += [len(b) for b in make_batches(costs, encoder.batch_policy())]
    return sizes


def compare(ctx: Context, w: Workload) -> None:
    """Warm both sides up, time the naive loop and ``mer extract`` (default and more decode
    threads), profile a subset of each for the busy fraction, and check they agree."""
    b = ctx.bench
    n = len(w.rows)
    ids = [r["id"] for r in w.rows]
    manifest = bx.write_csv(ctx.work / w.model / "corpus.csv", w.rows)
    warm_manifest = bx.write_csv(ctx.work / w.model / "warm.csv", w.rows[:2])
    profile_rows = w.rows[:w.profile_items]
    profile_manifest = bx.write_csv(ctx.work / w.model / "profile.csv", profile_rows)
    naive_rows = w.rows[:w.naive_items]
    out = ctx.work / w.model / "naive"
    device = {"device": str(ctx.device)}
    cfg, _ = b.config(f"{w.model}-mer", manifest, w.feature, extract=device)
    default_io = cfg.extract.io_threads
    more_io = max(default_io, ctx.cpus - 2)
    variants: dict[str, Any] = {"mer": cfg}
    if more_io > default_io:
        variants[f"mer io_threads={more_io}"] = b.config(f"{w.model}-io", manifest, w.feature,
                                                         extract={**device, "io_threads": more_io})[0]
    log(f"{w.section}/{w.model}: warm-up (CUDA context, weight hash, page cache)")
    w.naive(w.rows[:2], out.with_name("warm"))
    bx.run_mer(b.config(f"{w.model}-warm", warm_manifest, w.feature, extract=device)[0], 2)

    runs: dict[str, Measured] = {}
    items: dict[str, list[str]] = {"naive": [r["id"] for r in naive_rows]}
    log(f"{w.section}/{w.model}: naive loop over {len(naive_rows)} items")
    runs["naive"] = measure(ctx.device, lambda: w.naive(naive_rows, out))
    for name, config in variants.items():
        log(f"{w.section}/{w.model}: {name} over {n} items")
        runs[name] = measure(ctx.device, lambda: bx.run_mer(config, n))
        items[name] = ids
    log(f"{w.section}/{w.model}: profiled passes over {len(profile_rows)} items (busy fraction)")
    busy = {"naive": busy_fraction(ctx.device, lambda: w.naive(profile_rows, out.with_name("profiled"))).busy,
            "mer": busy_fraction(ctx.device, lambda: bx.run_mer(
                b.config(f"{w.model}-profiled", profile_manifest, w.feature, extract=device)[0],
                len(profile_rows))).busy}
    agree = bx.agreement(runs["naive"].result, bx.mer_pooled(cfg, w.modality, items["naive"]))
    batches = planned_batches(ctx, cfg, w.modality, w.rows)

    bf16, fp32 = ctx.peaks["bf16"]["best"], ctx.peaks["fp32"]["best"]
    rec: dict[str, Any] = {"items": n, "naive_items": len(naive_rows), "profile_items": len(profile_rows),
                           "unit": w.unit, "amount_total": round(sum(w.amount.values()), 2),
                           "model_tflop_total": round(sum(w.flops.values()) / 1e12, 3), "agreement": agree,
                           "mer_batches": {"count": len(batches), "mean_size": round(float(np.mean(batches)), 2),
                                           "max_size": max(batches), "single_item": sum(1 for s in batches if s == 1)},
                           "feature": {k: v for k, v in w.feature.items() if k != "model"}, "variants": {}}
    rows_out = []
    naive_rate = None
    for name, run in runs.items():
        chosen = items[name]
        count = len(chosen)
        amount = sum(w.amount[i] for i in chosen)
        flops = sum(w.flops[i] for i in chosen)
        rate = amount / run.seconds
        naive_rate = naive_rate or rate
        v = {"items": count, "seconds": round(run.seconds, 3), "items_per_s": count / run.seconds,
             f"{w.unit}_per_s": rate, "speedup_vs_naive": rate / naive_rate,
             "model_tflops": flops / run.seconds / 1e12, "share_of_bf16_matmul": flops / run.seconds / bf16,
             "share_of_fp32_matmul": flops / run.seconds / fp32, "peak_device_bytes": run.peak_bytes,
             "busy_fraction": busy.get(name)}
        rec["variants"][name] = v
        rows_out.append([f"{w.model} / {name}", count, f"{run.seconds:.2f}", f"{v['items_per_s']:.1f}",
                         f"{rate:.1f}", f"{v['speedup_vs_naive']:.2f}", f"{v['model_tflops']:.2f}",
                         f"{100 * v['share_of_bf16_matmul']:.1f}",
                         "-" if v["busy_fraction"] is None else f"{100 * v['busy_fraction']:.0f}",
                         "-" if run.peak_bytes is None else human_bytes(run.peak_bytes)])
    ctx.record.setdefault(w.section, {})[w.model] = rec
    ctx.tables.append(table(
        ["model / side", "items", "seconds", "items/s", f"{w.unit}/s", "x naive", "model TFLOP/s", "% bf16 peak",
         "busy %", "peak mem"], rows_out,
        title=f"{w.section}: {n} items ({rec['amount_total']} {w.unit}); naive on the first {len(naive_rows)}; "
              f"'x naive' compares {w.unit}/s; busy % from a profiled pass over {len(profile_rows)} items; mer ran "
              f"{len(batches)} model calls (mean batch {rec['mer_batches']['mean_size']}); agreement naive vs mer: "
              f"min cosine {agree['min_cosine']:.5f}"))


# --- sections ----------------------------------------------------------------------------------

def section_speech(ctx: Context) -> None:
    from mer.features.audio_io import audio_samples

    s = ctx.sizes
    rows = ctx.clips
    lengths = {r["id"]: audio_samples(r["audio"], bx.MODEL_SR) for r in rows}
    ctx.record.setdefault("speech", {})["corpus"] = {
        "clips": len(rows), "format": "FLAC PCM_16 mono 48 kHz", "seconds_total": round(sum(lengths.values()) / bx.MODEL_SR, 1),
        "seconds_min": round(min(lengths.values()) / bx.MODEL_SR, 2), "seconds_max": round(max(lengths.values()) / bx.MODEL_SR, 2)}
    for size in s.speech_models:
        folder = str(bx.save_wav2vec2(ctx.work / "models" / f"wav2vec2-{size}", size))
        # FLOPs without the attention mask: the same matrix products, and the model then runs on meta
        counted_on: list[str] = []

        def count(ls: list[int], folder: str = folder) -> dict[int, int]:
            flops, where = bx.forward_flops(folder, ls, bx.audio_inputs(False))
            counted_on.append(where)
            return flops

        flops, how = speech_flops(folder, list(lengths.values()), count, s.exact_flops)
        how["counted_on"] = counted_on[0]
        log(f"speech/wav2vec2-{size}: FLOPs {how}")

        def naive(subset: list[dict], out: Path, folder: str = folder) -> np.ndarray:
            return bx.naive_audio(folder, subset, out, str(ctx.device))

        compare(ctx, Workload(
            section="speech", model=f"wav2vec2-{size}", modality="audio", rows=rows,
            feature={"modality": "audio", "encoder": "hf-audio", "model": folder, "autocast": "bf16"},
            flops={i: flops[n] for i, n in lengths.items()}, amount={i: n / bx.MODEL_SR for i, n in lengths.items()},
            unit="audio-s", naive=naive, naive_items=s.naive_clips, profile_items=s.profile_clips))
        ctx.record["speech"][f"wav2vec2-{size}"]["flops_method"] = how
        ctx.save()


def section_text(ctx: Context) -> None:
    from transformers import AutoTokenizer

    s = ctx.sizes
    folder = str(save_bert(ctx.work / "models" / f"bert-{s.text_model}", s.text_model))
    sentences = bx.make_sentences(s.sentences)
    rows = [{"id": f"s{k:05d}", "text": t} for k, t in enumerate(sentences)]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokens = [len(ids) for ids in tokenizer(sentences, truncation=True, max_length=256)["input_ids"]]
    flops, how = bx.forward_flops(folder, tokens, bx.text_inputs)
    log(f"text/bert-{s.text_model}: {len(rows)} sentences, {sum(tokens)} tokens; FLOPs counted on {how}")

    def naive(subset: list[dict], out: Path) -> np.ndarray:
        return bx.naive_text(folder, subset, out, str(ctx.device))

    compare(ctx, Workload(
        section="text", model=f"bert-{s.text_model}", modality="text", rows=rows,
        feature={"modality": "text", "encoder": "hf-text", "model": folder, "autocast": "bf16"},
        flops={r["id"]: flops[t] for r, t in zip(rows, tokens)},
        amount={r["id"]: float(t) for r, t in zip(rows, tokens)},
        unit="tokens", naive=naive, naive_items=s.naive_sentences, profile_items=s.profile_sentences))
    ctx.save()


def step_rate(cfg: Any, data: Any, model_name: str, batches: int) -> Measured:
    """``batches`` optimiser steps of the trainer (``bench/train.py``'s ``train_step``: forward,
    losses, backward, clipping, Adam) over on-device index batches, after 2 warm-up steps; the
    result is samples per second."""
    import torch

    from mer.train.trainer import deterministic

    model, criterion, optimizer = bt.build_model(cfg, data, model_name)
    idx = data.index("train")
    bs = cfg.train.batch_size
    if batches * bs > len(idx):
        raise ValueError(f"{batches} batches of {bs} exceed the {len(idx)} training samples")
    order = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0)).to(data.device)
    model.train()

    def steps(k: int) -> None:
        for j in range(k):
            bt.train_step(model, data.batch(idx[order[j * bs:(j + 1) * bs]]), criterion, optimizer, cfg.train.grad_clip)

    with deterministic():
        steps(2)
        run = measure(data.device, lambda: steps(batches))
    run.result = batches * bs / run.seconds
    return run


def section_train(ctx: Context) -> None:
    import torch

    from mer.train.config import LmrConfig
    from mer.experiment import load_experiment_data, manifest_for

    s = ctx.sizes
    root = ctx.work / "train"
    cfg = load_config(bt.epoch_corpus(root, s.train_samples, s.train_batch))
    if s.lmr == "paper":  # else the demo size epoch_corpus writes
        cfg.train.lmr = LmrConfig()
    log(f"train: writing the {s.train_samples}-sample cache through extract()")
    cache = measure(torch.device("cpu"), lambda: bx.run_mer(cfg, s.train_samples))
    manifest, _ = manifest_for(cfg)
    modalities = list(bt.EPOCH_MODALITIES)
    loaded = measure(ctx.device, lambda: load_experiment_data(cfg, manifest, modalities, device=ctx.device, reuse=True))
    data = loaded.result
    cpu_data = data if not ctx.cuda else load_experiment_data(cfg, manifest, modalities, device="cpu", reuse=True)
    n_train = len(data.rows("train"))
    data_bytes = sum(t.numel() * t.element_size() for d in data.modalities.values() for t in (d.x, d.present))
    rec: dict[str, Any] = {"samples": s.train_samples, "train_samples": n_train, "batch_size": s.train_batch,
                           "dims": {m: d for m, (d, _) in bt.EPOCH_MODALITIES.items()},
                           "lmr": asdict(cfg.train.lmr), "concat_hidden": cfg.train.hidden,
                           "cache_extract_seconds": round(cache.seconds, 2),
                           "load_train_data_seconds": round(loaded.seconds, 2), "data_on_device_bytes": data_bytes,
                           "cpu_threads": ctx.cpus, "models": {}}
    lines = []
    for model_name in ("concat", "lmr"):
        log(f"train/{model_name}: fit() epochs on {ctx.device}, then {s.cpu_batches} steps on {ctx.device} and on CPU")
        variant = bt.fit_variant(cfg, data, model_name)
        variant.run()  # warm-up epoch
        epochs = [measure(ctx.device, variant.run) for _ in range(s.train_epochs)]
        device_steps = step_rate(cfg, data, model_name, s.cpu_batches)
        bx.set_threads()
        cpu_steps = step_rate(cfg, cpu_data, model_name, s.cpu_batches)
        epoch_s = float(np.median([e.seconds for e in epochs]))
        m = {"fit_epoch_seconds": [round(e.seconds, 3) for e in epochs], "fit_epoch_seconds_median": epoch_s,
             "fit_samples_per_s": n_train / epoch_s, "peak_device_bytes": max((e.peak_bytes or 0) for e in epochs) or None,
             "steps": s.cpu_batches, "device_step_samples_per_s": device_steps.result,
             "cpu_step_samples_per_s": cpu_steps.result,
             "device_over_cpu_steps": device_steps.result / cpu_steps.result,
             "cpu_epoch_seconds_projected": n_train / cpu_steps.result,
             "parameters": sum(p.numel() for p in bt.build_model(cfg, cpu_data, model_name)[0].parameters())}
        rec["models"][model_name] = m
        lines.append([model_name, f"{epoch_s:.2f}", f"{m['fit_samples_per_s']:.0f}", f"{device_steps.result:.0f}",
                      f"{cpu_steps.result:.0f}", f"{m['device_over_cpu_steps']:.1f}",
                      f"{m['cpu_epoch_seconds_projected']:.1f}",
                      "-" if m["peak_device_bytes"] is None else human_bytes(m["peak_device_bytes"])])
    ctx.record["train"] = rec
    ctx.tables.append(table(
        ["model", f"{ctx.device.type} fit() s/epoch", "fit samples/s", f"{ctx.device.type} step samples/s",
         "CPU step samples/s", "device / CPU", "CPU s/epoch (projected)", "peak mem"], lines,
        title=f"train: {n_train} training samples of {s.train_samples}, batch {s.train_batch}, float16 cache "
              f"{', '.join(f'{m} {d}-d' for m, (d, _) in bt.EPOCH_MODALITIES.items())}; fit() includes validation "
              f"scoring; steps: {s.cpu_batches} optimiser steps, CPU on {ctx.cpus} threads; data on the device "
              f"{human_bytes(data_bytes)}"))
    ctx.save()


RUN: dict[str, Callable[[Context], None]] = {"speech": section_speech, "text": section_text, "train": section_train}


# --- the run -----------------------------------------------------------------------------------

def device_info(device: Any) -> dict[str, Any]:
    import torch
    import transformers

    info = {"device": str(device), "torch_cuda": torch.version.cuda, "transformers": transformers.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_bytes=props.total_memory, capability=f"{props.major}.{props.minor}",
                    multiprocessors=props.multi_processor_count, bf16=torch.cuda.is_bf16_supported())
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks every code path, no figures")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--clips", type=int, help="speech clips (default 1000)")
    parser.add_argument("--sentences", type=int, help="text sentences (default 20000)")
    parser.add_argument("--train-samples", type=int, help="training cache samples (default 100000)")
    parser.add_argument("--out", help="JSON record (default bench/results/gpu.json; --dry-run: <tmp>/mer-gpu-dry-run.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = parser.parse_args(argv)
    args.sections = [x.strip() for x in args.only.split(",") if x.strip()]
    bad = sorted(set(args.sections) - set(SECTIONS))
    if bad:
        parser.error(f"--only: unknown section(s) {bad}; choose from {SECTIONS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is a local folder: never wait on a network
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=UserWarning)
    bx.quiet_libraries()
    sizes = DRY if args.dry_run else FULL
    sizes = replace(sizes, **{k: v for k, v in (("clips", args.clips), ("sentences", args.sentences),
                                                ("train_samples", args.train_samples)) if v})
    sizes = replace(sizes, naive_clips=min(sizes.naive_clips, sizes.clips),
                    profile_clips=min(sizes.profile_clips, sizes.clips),
                    naive_sentences=min(sizes.naive_sentences, sizes.sentences),
                    profile_sentences=min(sizes.profile_sentences, sizes.sentences))
    if args.dry_run:
        device = torch.device("cpu")
        if hasattr(os, "sched_setaffinity"):
            # one core, so one torch thread everywhere: on a shared CPU (CI) contended OpenMP threads
            # run tiny models many times slower than one thread, and dry-run figures mean nothing
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    elif not torch.cuda.is_available():
        print(f"bench/gpu.py: no CUDA device (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "run with --dry-run to check it on the CPU", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    cpus = bx.set_threads()
    work = Path(tempfile.mkdtemp(prefix="mer-bench-gpu-"))
    default = Path(tempfile.gettempdir()) / "mer-gpu-dry-run.json" if args.dry_run else RESULTS / "gpu.json"
    out = Path(args.out) if args.out else default
    ctx = Context(device=device, sizes=sizes, work=work, out=out, cpus=cpus,
                  bench=bx.Bench(work=work, reps=1, quick=args.dry_run, cpus=cpus))
    ctx.record.update(machine=machine_info(), device=device_info(device), dry_run=args.dry_run,
                      settings={**asdict(sizes), "sections": args.sections}, sections={}, errors={})
    wall = time.perf_counter()
    log(f"work folder {work}; device {device}; {cpus} cores; load average {loadavg()}; sections {args.sections}")
    try:
        if "speech" in args.sections:
            log(f"speech: writing {sizes.clips} FLAC clips of {sizes.clip_seconds[0]}-{sizes.clip_seconds[1]} s "
                f"with {cpus} processes")
            ctx.clips = make_clips(work / "flac", sizes.clips, sizes.clip_seconds, cpus)
        ctx.peaks = {"bf16": matmul_peak(device, torch.bfloat16, sizes.matmul_n),
                     "fp32": matmul_peak(device, torch.float32, sizes.matmul_n)}
        ctx.record["matmul_peak_flops"] = ctx.peaks
        log("matmul " + ", ".join(f"{k} {v['best'] / 1e12:.1f} TFLOP/s" for k, v in ctx.peaks.items()))
        for name in args.sections:
            start = time.perf_counter()
            try:
                RUN[name](ctx)
            except Exception:  # noqa: BLE001 - recorded with its traceback; the other sections still run
                ctx.record["errors"][name] = traceback.format_exc()
                log(f"{name}: FAILED\n{ctx.record['errors'][name]}")
            ctx.record["sections"][name] = {"seconds": round(time.perf_counter() - start, 1)}
            ctx.save()
        ctx.record["machine"]["loadavg_end"] = loadavg()
        ctx.record["wall_seconds"] = round(time.perf_counter() - wall, 1)
        ctx.save()
        print()
        print(f"mer GPU benchmark{' (DRY RUN: tiny sizes on CPU, no figure means anything)' if args.dry_run else ''} - "
              f"{ctx.record['device'].get('name', device)}, torch {torch.__version__}; matmul peak bf16 "
              f"{ctx.peaks['bf16']['best'] / 1e12:.1f} / fp32 {ctx.peaks['fp32']['best'] / 1e12:.1f} TFLOP/s; "
              f"{cpus} CPU cores, load average {ctx.record['machine']['loadavg_start']} -> "
              f"{ctx.record['machine']['loadavg_end']}")
        for t in ctx.tables:
            print()
            print(t)
        print(f"\nwall time {ctx.record['wall_seconds']} s (sections: "
              + ", ".join(f"{k} {v['seconds']} s" for k, v in ctx.record["sections"].items()) + f"); JSON record: {out}")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if ctx.record["errors"]:
        print(f"FAILED sections: {', '.join(ctx.record['errors'])} (tracebacks in the JSON record)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
