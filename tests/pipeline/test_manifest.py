"""Manifest round-trip, fingerprint stability, and generic-manifest errors that name rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer.pipeline.adapters.generic import load_generic
from mer.pipeline.manifest import Manifest, ManifestError


def _frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"s{i:02d}" for i in range(n)],
        "label": ["happy", "sad", "", "neutral", "happy"][:n],
        "group": ["spk1", "spk1", "spk2", "spk2", "spk3"][:n],
        "split": ["train", "train", "val", "test", "test"][:n],
        "text": ["hello, world", "x", "", "ünïcode ’quotes’", "a\"b"][:n],
        "start": ["0.5", "", "1", "2.25", ""][:n],
        "target_valence": ["3.5", "1", "2", "", "5"][:n],
    })


def test_round_trip_preserves_content_and_fingerprint(tmp_path: Path) -> None:
    m = Manifest(_frame())
    path = m.save(tmp_path / "manifest.csv")
    back = Manifest.load(path)
    pd.testing.assert_frame_equal(m.df, back.df)
    assert back.fingerprint == m.fingerprint
    meta = json.loads(path.with_name("manifest.csv.json").read_text())
    assert meta["fingerprint"] == m.fingerprint and meta["samples"] == 5
    assert np.isnan(back.df.loc[back.df.id == "s01", "start"].item())
    assert back.df.loc[back.df.id == "s03", "text"].item() == "ünïcode ’quotes’"


def test_fingerprint_ignores_row_and_column_order_but_not_content() -> None:
    df = _frame()
    a = Manifest(df).fingerprint
    shuffled = df.sample(frac=1.0, random_state=3)[list(reversed(df.columns))]
    assert Manifest(shuffled).fingerprint == a
    changed = df.copy()
    changed.loc[2, "label"] = "angry"
    assert Manifest(changed).fingerprint != a
    assert a == Manifest(_frame()).fingerprint  # stable across constructions


def test_rows_are_returned_in_the_order_asked_for() -> None:
    m = Manifest(_frame())
    rows = m.rows(["s04", "s00", "s02"])
    assert [r["id"] for r in rows] == ["s04", "s00", "s02"]
    assert rows[0]["text"] == 'a"b'


def _write(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def test_generic_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.csv", _frame().drop(columns=["group"]))
    with pytest.raises(ManifestError) as err:
        load_generic(path)
    assert str(path) in str(err.value) and "'group'" in str(err.value)


def test_generic_duplicate_ids_name_the_rows(tmp_path: Path) -> None:
    df = _frame()
    df.loc[3, "id"] = "s01"
    path = _write(tmp_path / "m.csv", df)
    with pytest.raises(ManifestError) as err:
        load_generic(path)
    msg = str(err.value)
    assert str(path) in msg and "'id'" in msg
    assert "row 3 (id='s01'" in msg and "row 5 (id='s01'" in msg  # file line numbers (header = 1)


def test_generic_missing_files_name_rows_and_resolve_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "wav").mkdir()
    for name in ("a.wav", "c.wav"):
        (tmp_path / "wav" / name).write_bytes(b"RIFF")
    df = _frame(3)
    df["audio"] = ["wav/a.wav", "wav/missing.wav", "wav/c.wav"]
    path = _write(tmp_path / "m.csv", df)
    with pytest.raises(ManifestError) as err:
        load_generic(path)
    msg = str(err.value)
    assert "'audio'" in msg and "missing.wav" in msg and "row 3 (id='s01'" in msg and "a.wav" not in msg
    df.loc[1, "audio"] = "wav/c.wav"
    m = load_generic(_write(tmp_path / "m.csv", df))
    assert m.df["audio"].tolist()[0] == str((tmp_path / "wav" / "a.wav").resolve())


def test_generic_bad_values_name_rows(tmp_path: Path) -> None:
    df = _frame()
    df.loc[1, "split"] = "training"
    with pytest.raises(ManifestError, match=r"'split'.*row 3 \(id='s01', split='training'\)"):
        load_generic(_write(tmp_path / "m.csv", df))
    df = _frame()
    df.loc[4, "start"] = "abc"
    with pytest.raises(ManifestError, match=r"'start' must be numeric.*row 6 \(id='s04'"):
        load_generic(_write(tmp_path / "m.csv", df))


def test_generic_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    records = _frame().to_dict("records")
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    m = load_generic(path)
    assert m.ids == [f"s{i:02d}" for i in range(5)]
    assert m.df.loc[m.df.id == "s00", "target_valence"].item() == 3.5


def test_summary_counts_splits_labels_groups_and_modalities() -> None:
    text = Manifest(_frame()).summary({"text": "text"})
    assert "5 samples" in text and "<unlabeled>" in text
    assert "text: 4 present, 1 missing" in text
    assert "samples per group (3 groups): spk1=2, spk2=2, spk3=1" in text


def test_summary_digests_group_sizes_when_there_are_many_groups() -> None:
    """MELD has 304 speakers: one line per summary, not a 304-entry list."""
    sizes = {f"spk{g:03d}": 1 + g % 7 for g in range(40)}  # spk000=1 ... spk006=7, repeating
    groups = [name for name, k in sizes.items() for _ in range(k)]
    frame = pd.DataFrame({"id": [f"u{i:04d}" for i in range(len(groups))], "label": "happy", "group": groups,
                          "split": "train"})
    line = next(x for x in Manifest(frame).summary().splitlines() if x.startswith("samples per group"))
    expected_median = float(np.median(list(sizes.values())))
    assert line == (f"samples per group (40 groups): min 1, median {expected_median:g}, max 7; smallest: "
                    "spk000=1, spk007=1, spk014=1, spk021=1, spk028=1")
