"""The one .csd layout reader (features/csd_file.py): the encoder spec's header and the pipeline's
reader see the same root, D and dimension names, and reject bad files with the same messages."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mer.features.csd_file import CsdError, decode_metadata, open_sequence
from mer.features.csd_seq import read_header
from mer.pipeline.csd import read_csd, write_csd


def test_decode_metadata_as_the_sdk_writes_it():
    assert decode_metadata(np.array([b'["f0", "vuv"]'], dtype=object)) == ["f0", "vuv"]
    assert decode_metadata(np.array(['"COVAREP"'], dtype=object)) == "COVAREP"
    assert decode_metadata(b"not json") == "not json"
    assert decode_metadata(np.int64(3)) == 3
    assert decode_metadata(np.array([b"1", b"2"])) == [1, 2]


def test_header_and_reader_agree(tmp_path):
    feats = np.arange(12, dtype=np.float32).reshape(4, 3)
    ivs = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], np.float32)
    path = write_csd(tmp_path / "a.csd", "COVAREP", {"v1": (feats, ivs)}, {"dimension names": ["a", "b", "c"]})
    # a first video without features: D comes from the next one, in both readers
    with h5py.File(path, "a") as f:
        f["COVAREP/data"].create_group("v0")
    header = read_header(path)
    with read_csd(path) as seq:
        assert (header.root, header.dim, header.names) == (seq.name, seq.dim, seq.dimension_names) \
            == ("COVAREP", 3, ["a", "b", "c"])


def test_bad_files_give_the_same_messages(tmp_path):
    two = tmp_path / "two.csd"
    with h5py.File(two, "w") as f:
        for name in ("A", "B"):
            f.create_group(name).create_group("data")
    with pytest.raises(CsdError, match=r"expected one root group .*\['A', 'B'\]$"):
        read_csd(two)
    with pytest.raises(CsdError, match=r"found \['A', 'B'\]; set features.<modality>.root"):
        read_header(two)
    with pytest.raises(CsdError, match="holds no video with features .* D is unknown"):
        read_header(two, "B")
    with pytest.raises(CsdError, match="'A/metadata' is missing"):
        read_csd(two, "A")
    with pytest.raises(CsdError, match="no root group 'C'"):
        read_header(two, "C")
    (tmp_path / "bad.csd").write_text("not hdf5")
    for reader in (read_csd, read_header):
        with pytest.raises(CsdError, match="not an HDF5 computational sequence"):
            reader(tmp_path / "bad.csd")
    # the file handle is closed on every refusal (h5py would refuse to open it for writing otherwise)
    with pytest.raises(CsdError):
        open_sequence(two)
    with h5py.File(two, "w"):
        pass
