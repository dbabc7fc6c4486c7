"""Small synthetic corpora with separable classes, extracted into real caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

CLASSES = ("ang", "hap", "neu", "sad")


def _fmt(x: np.ndarray) -> str:
    return ";".join(f"{v:.6g}" for v in np.asarray(x).ravel())


def make_corpus(root: Path, n: int = 96, dims: dict[str, int] | None = None, *, classes=CLASSES[:3],
                groups: int = 8, test_groups: int = 2, val: bool = False, seed: int = 0, noise: float = 1.0,
                spread: float = 3.0, missing: dict[str, list[int]] | None = None, layers: dict[str, int] | None = None,
                multilabel: bool = False, unlabeled: list[int] | None = None, families: dict[str, str] | None = None,
                train: dict | None = None, corpus: str = "synth") -> tuple[Path, pd.DataFrame]:
    """Write ``root/corpus.csv`` and ``root/config.yaml``; return (config path, table).

    Modality m's vector is its class centre (``spread``-scaled, per modality) plus Gaussian
    ``noise``; ``missing[m]`` lists row numbers without m; groups ``g0..`` are speakers, the
    last ``test_groups`` are the test split, the others train (and val groups when ``val``).
    """
    dims = dims or {"text": 6, "audio": 5}
    layers = layers or {}
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(classes)
    rng.shuffle(y)
    group = np.arange(n) % groups
    split = np.where(group >= groups - test_groups, "test", "train").astype(object)
    if val:
        split[group == 0] = "val"
    table = pd.DataFrame({"id": [f"u{i:04d}" for i in range(n)], "group": [f"g{g}" for g in group],
                          "split": split})
    if multilabel:
        second = (y + 1 + rng.integers(0, 2, n)) % len(classes)
        keep_two = rng.random(n) < 0.5
        table["label"] = [";".join(sorted({classes[a]} | ({classes[b]} if k else set())))
                          for a, b, k in zip(y, second, keep_two)]
    else:
        table["label"] = [classes[k] for k in y]
    for r in unlabeled or []:
        table.loc[r, "label"] = ""
    onehot = np.zeros((n, len(classes)))
    for i, lab in enumerate(table["label"]):
        for c in lab.split(";"):
            if c:
                onehot[i, classes.index(c)] = 1
    for m, d in dims.items():
        centres = rng.normal(size=(len(classes), d)) * spread
        base = onehot @ centres
        L = layers.get(m, 0)
        values = []
        for i in range(n):
            if L:
                x = base[i][None, :] * np.linspace(0.2, 1.0, L)[:, None] + rng.normal(size=(L, d)) * noise
            else:
                x = base[i] + rng.normal(size=d) * noise
            values.append(_fmt(x))
        for r in (missing or {}).get(m, []):
            values[r] = ""
        table[f"feat_{m}"] = values
    root.mkdir(parents=True, exist_ok=True)
    table.to_csv(root / "corpus.csv", index=False)
    features = {m: {"encoder": "kit.synth", "column": f"feat_{m}", "dim": d, "layers": layers.get(m, 0),
                    "family": (families or {}).get(m, "synth")} for m, d in dims.items()}
    config = {
        "dataset": {"name": "generic", "manifest": str(root / "corpus.csv"), "corpus": corpus},
        "cache": {"root": str(root / "cache"), "dtype": "float32", "shard_size": 64},
        "features": features,
        "extract": {"device": "cpu", "prefetch": 0, "io_threads": 1},
        "train": {"model": "concat", "epochs": 30, "batch_size": 32, "lr": 0.01, "hidden": 16, "dropout": 0.0,
                  "patience": 30, "device": "cpu", "classes": list(classes) if multilabel else [],
                  "multilabel": multilabel, "lmr": {"hidden": 16, "tokens": 2, "layers": 1, "heads": 2, "ffn": 16},
                  **(train or {})},
        "output": str(root / "runs"),
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path, table


def extract_all(config_path: Path, modalities: list[str] | None = None, overrides=()):
    """Build the caches through the real extraction (embedded scheduler, no progress bar)."""
    from mer.config import load_config
    from mer.pipeline.extract import extract

    config = load_config(config_path, list(overrides))
    return extract(config, modalities, progress=False)
