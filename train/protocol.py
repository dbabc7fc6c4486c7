"""The protocol card: what split a run's numbers come from, written into every metrics.json and log.

A result is only as good as its split. The card states, for one run: the protocol and fold,
the groups (actors, speakers, sessions) of each split, the labelled samples per class per
split, which split chose the epoch and hyper-parameters, and the manifest (path, content
fingerprint, dataset key). :func:`check_card` refuses a run whose splits share a group when
the protocol claims to be speaker-independent; a protocol that does not claim it (MELD's
standard split) is let through and the card says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mer.pipeline.adapters.base import Protocol
from mer.pipeline.manifest import Manifest
from mer.train.errors import DataError

SPLITS = ("train", "val", "test")
#: the log lists this many groups of a split, then a count
LISTED = 12


def protocol_card(protocol: Protocol, *, adapter: str, split_column: str, split: np.ndarray, groups: np.ndarray,
                  labels: list[str], labeled: np.ndarray, classes: list[str], val_carved: bool,
                  val_groups: list[str], manifest: dict[str, str]) -> dict[str, Any]:
    """The card of one run, as plain JSON.

    Args:
        protocol: what the adapter says the ``dataset`` section selects.
        split: per row, train/val/test/'' after carving; groups: per row ('' = none recorded).
        labels: per row, the label text (multi-label: ``;``-joined classes); labeled: per row.
        manifest: ``path``, ``fingerprint`` and ``dataset_key`` of the manifest read.
    """
    split = np.asarray(split, dtype=object)
    groups = np.asarray(groups, dtype=object)
    labeled = np.asarray(labeled, dtype=bool)
    name = protocol.name if split_column == "split" else f"manifest column {split_column!r} (dataset: {protocol.name})"
    card: dict[str, Any] = {
        "adapter": adapter, "protocol": name, "split_column": split_column, "group": protocol.group,
        "speaker_independent": protocol.speaker_independent,
        "selected_on": "val", "val_carved": bool(val_carved), "val_carved_groups": list(val_groups),
        "groups": {}, "counts": {}, "ungrouped": {}, "shared_groups": {}, "manifest": dict(manifest),
    }
    members = {}
    for s in SPLITS:
        rows = split == s
        present = groups[rows]
        members[s] = set(str(g) for g in present if g != "")
        card["groups"][s] = sorted(members[s])
        card["ungrouped"][s] = int((present == "").sum())
        counts = {c: 0 for c in classes}
        for text in np.asarray(labels, dtype=object)[rows & labeled]:
            for c in str(text).split(";"):
                if c in counts:
                    counts[c] += 1
        card["counts"][s] = counts
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            both = sorted(members[a] & members[b])
            if both:
                card["shared_groups"][f"{a}/{b}"] = both
    return card


def manifest_card(protocol: Protocol | None, *, adapter: str, dataset_key: str, manifest: Manifest,
                  manifest_path: str, split_column: str, target: str, split: np.ndarray, labeled: np.ndarray,
                  classes: list[str], val_carved: bool, val_groups: list[str]) -> dict[str, Any]:
    """:func:`protocol_card` with the groups and labels read from ``manifest`` (rows in its order,
    which is the order of ``split`` and ``labeled``)."""
    df = manifest.df
    groups = df["group"].astype(str).to_numpy(dtype=object) if "group" in df.columns else np.full(len(df), "", object)
    labels = df[target].astype(str).tolist() if target in df.columns else [""] * len(df)
    return protocol_card(protocol or Protocol("the manifest's split column"), adapter=adapter or "manifest",
                         split_column=split_column, split=split, groups=groups, labels=labels, labeled=labeled,
                         classes=classes, val_carved=val_carved, val_groups=val_groups,
                         manifest={"path": manifest_path, "fingerprint": manifest.fingerprint,
                                   "dataset_key": dataset_key})


def check_card(card: dict[str, Any], source: str) -> None:
    """DataError when a speaker-independent protocol's splits share a group."""
    if not card["shared_groups"] or not card["speaker_independent"]:
        return
    shared = "; ".join(f"{pair}: {_preview(g)}" for pair, g in card["shared_groups"].items())
    raise DataError(f"{source}: protocol {card['protocol']} is declared speaker-independent but these "
                    f"{card['group']}s are in two splits: {shared}. Fix the split (or the 'group' column); a "
                    "protocol that is not speaker-independent must say so (generic manifests: "
                    "dataset.speaker_independent=false)")


def format_card(card: dict[str, Any]) -> str:
    """The card as the lines of a run log (and of ``mer evaluate``)."""
    kind = "speaker-independent" if card["speaker_independent"] else "NOT speaker-independent"
    m = card["manifest"]
    lines = [f"protocol: {card['adapter']} {card['protocol']} ({kind} by {card['group']}); "
             f"epoch and hyper-parameters chosen on {card['selected_on']}"
             + (" (carved from the training groups)" if card["val_carved"] else ""),
             f"  manifest {m.get('path', '?')} fingerprint {m.get('fingerprint', '?')}"
             + (f" dataset key {m['dataset_key']}" if m.get("dataset_key") else "")]
    for s in SPLITS:
        groups = card["groups"][s]
        counts = card["counts"][s]
        if not groups and not sum(counts.values()) and not card["ungrouped"][s]:
            continue
        listed = ", ".join(groups[:LISTED]) + (f", ... ({len(groups) - LISTED} more)" if len(groups) > LISTED else "")
        extra = f" + {card['ungrouped'][s]} samples without a group" if card["ungrouped"][s] else ""
        lines.append(f"  {s}: {len(groups)} {card['group']}(s) [{listed}]{extra}; "
                     + ", ".join(f"{c}={n}" for c, n in counts.items()))
    if card["shared_groups"]:
        lines.append("  shared groups (the protocol is not speaker-independent): "
                     + "; ".join(f"{pair}: {_preview(g)}" for pair, g in card["shared_groups"].items()))
    else:
        lines.append(f"  no {card['group']} is in two splits")
    return "\n".join(lines)


def _preview(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


__all__ = ["check_card", "format_card", "manifest_card", "protocol_card"]
