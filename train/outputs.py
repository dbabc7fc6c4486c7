"""Writing a run's files so that a kill never leaves half of one.

Each file is written to ``<name>.tmp`` and renamed into place (``os.replace`` is atomic on one
file system): a reader sees the old file or the new one, never a truncated one. ``mer train``
and ``mer finetune`` write their run folders with these.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import yaml


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def write_json(obj: Any, path: Path) -> None:
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_yaml(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file (a killed save leaves the old file or none)."""
    tmp = _tmp(path)
    torch.save(obj, tmp)
    os.replace(tmp, path)
