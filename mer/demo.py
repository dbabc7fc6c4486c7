"""The whole path on the demo corpus: extract → train (LMR-CL and the baselines) → evaluate.

This is what ``mer demo`` runs after generating the corpus. It is deliberately a thin
orchestrator over the public stage APIs (:func:`mer.pipeline.extract.extract`,
:func:`mer.experiment.train_experiment`, :func:`mer.train.evaluate.evaluate_run`), so reading
it shows how a user would chain the stages in their own scripts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from mer.config import load_config

#: (model, modalities) trained by the demo, in the order of the comparison table
DEMO_RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lmr", ("text", "audio", "bio")),
    ("concat", ("text", "audio", "bio")),
    ("late", ("text", "audio", "bio")),
    ("unimodal", ("text",)),
    ("unimodal", ("audio",)),
    ("unimodal", ("bio",)),
)
METRICS = ("macro_f1", "uar", "accuracy", "weighted_f1")


@dataclass
class DemoRow:
    model: str
    modalities: str
    run_dir: str
    test: dict[str, float]
    test_std: dict[str, float]
    val_macro_f1: float
    reproduced: bool


def run_demo_pipeline(config_path: Path, runs_dir: Path, seeds: list[int],
                      log: Callable[[str], None] = print, progress: bool = True) -> pd.DataFrame:
    """Extract every demo modality, train each of :data:`DEMO_RUNS` over the cache, re-evaluate
    each run from its saved ``model.pt`` (it must reproduce ``metrics.json`` exactly), and
    return the comparison table (mean ± std over ``seeds``), best test macro-F1 first."""
    from mer.experiment import train_experiment
    from mer.pipeline.extract import extract
    from mer.train.evaluate import evaluate_run, metrics_equal

    config = load_config(config_path)
    report = extract(config.pipeline, progress=progress)
    log(report.summary())
    if not report.ok:
        raise RuntimeError(f"extraction recorded more failures than allowed; see the failures.jsonl files under {config.cache.root}")

    rows: list[DemoRow] = []
    for model, modalities in DEMO_RUNS:
        name = f"{model}-{'+'.join(modalities)}"
        overrides = [f"train.model={model}", f"train.modalities=[{','.join(modalities)}]"]
        run_config = load_config(config_path, overrides)
        log(f"\n== {name}: training {len(seeds)} seed(s)")
        run_dir, summary, results = train_experiment(run_config, runs_dir / name, seeds, overrides,
                                                     progress=progress, log=lambda line: None)
        reproduced = all(metrics_equal(evaluate_run(r.run_dir, "test", log=lambda line: None), r.metrics["test"])
                         for r in results)
        mean, std = summary["mean"]["test"], summary["std"]["test"]
        rows.append(DemoRow(model, "+".join(modalities), str(run_dir), {k: mean[k] for k in METRICS},
                            {k: std[k] for k in METRICS}, summary["mean"]["val"]["macro_f1"], reproduced))
        log(f"   test macro-F1 {mean['macro_f1']:.4f} ± {std['macro_f1']:.4f}; "
            f"mer evaluate reproduced metrics.json: {reproduced}")
    table = comparison_table(rows)
    write_comparison(table, runs_dir, seeds)
    return table


def comparison_table(rows: list[DemoRow]) -> pd.DataFrame:
    records = []
    for r in rows:
        rec = {"model": r.model, "modalities": r.modalities}
        for k in METRICS:
            rec[f"test_{k}"] = r.test[k]
            rec[f"test_{k}_std"] = r.test_std[k]
        rec["val_macro_f1"] = r.val_macro_f1
        rec["evaluate_reproduces"] = r.reproduced
        rec["run_dir"] = r.run_dir
        records.append(rec)
    return pd.DataFrame(records).sort_values("test_macro_f1", ascending=False, kind="stable").reset_index(drop=True)


def format_comparison(table: pd.DataFrame) -> str:
    """Markdown: mean ± std over seeds, percent, best first."""
    header = "| model | modalities | test macro-F1 | test UAR | test accuracy | test weighted-F1 | val macro-F1 |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
    for _, r in table.iterrows():
        cells = [f"{100 * r[f'test_{k}']:.1f} ± {100 * r[f'test_{k}_std']:.1f}" for k in METRICS]
        lines.append(f"| {r['model']} | {r['modalities']} | " + " | ".join(cells) + f" | {100 * r['val_macro_f1']:.1f} |")
    return "\n".join(lines)


def write_comparison(table: pd.DataFrame, runs_dir: Path, seeds: list[int]) -> None:
    """``comparison.csv``, ``comparison.md`` and a bar chart ``comparison.png`` in ``runs_dir``."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(runs_dir / "comparison.csv", index=False)
    (runs_dir / "comparison.md").write_text(
        f"Demo corpus, test split, mean ± std over seeds {seeds} (percent)\n\n{format_comparison(table)}\n", encoding="utf-8")
    (runs_dir / "comparison.json").write_text(json.dumps({"seeds": seeds, "rows": table.to_dict("records")}, indent=2),
                                              encoding="utf-8")
    plot_comparison(table, runs_dir / "comparison.png")


def plot_comparison(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{m}\n{mods}" for m, mods in zip(table["model"], table["modalities"])]
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 1, 4))
    x = range(len(labels))
    ax.bar(x, 100 * table["test_macro_f1"], yerr=100 * table["test_macro_f1_std"], capsize=4, color="#4c72b0")
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("test macro-F1 (%)")
    ax.set_title("mer demo: fusion vs single modalities")
    for i, v in enumerate(table["test_macro_f1"]):
        ax.text(i, 100 * v + 1, f"{100 * v:.1f}", ha="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_small_text_model(folder: Path, seed: int = 0) -> Path:
    """A small random BERT (character-level WordPiece vocabulary) for when the pretrained
    MiniLM package is absent. It goes through the same ``from_pretrained(path)`` code path as
    a real checkpoint; its features only carry lexical identity, which is enough to run the demo."""
    import string

    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *chars, *("##" + c for c in chars)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
