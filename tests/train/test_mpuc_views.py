"""MPUC-MER views: time-aligned across modalities, the original's loss on them, landmarks
normalised once per clip, the original's TCN parts / adjacency / StepLR, progress lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mer.train.pretrain as P
from mer.train.config import MpucConfig, TrainConfig
from mer.train.data import ModalityData, TrainData
from mer.train.losses.infonce import pairwise_infonce
from mer.train.losses.supcon import pairwise_supcon
from mer.train.models.mpuc import MPUC, Branch
from mer.train.models.stgcn import adjacency, face_adjacency, face_edges, minmax_per_clip, minmax_ragged
from mer.train.models.tcn import TCNEncoder
from mer.train.sequences import Padded, draw_windows, pad_rows
from mer.train.trainer import TrainingError

MEL_FPS, FACE_FPS = 100.0, 29.97


def stamped(lengths: list[int], rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat frames whose one value is the frame's own time stamp k / rate, and offsets."""
    values = torch.cat([torch.arange(n, dtype=torch.float64) / rate for n in lengths]).unsqueeze(1)
    offsets = torch.tensor([0] + list(np.cumsum(lengths)), dtype=torch.long)
    return values.float(), offsets


def timed_data(seconds: list[float], face_missing: tuple[int, ...] = ()) -> TrainData:
    """'mel' at 100 fps (rate from the cache's hop), 'face' at 29.97 fps (rate from config), and
    'vec': one pooled vector [0, clip end] per clip. The face track ends a frame or two early."""
    n = len(seconds)
    mel_len = [int(math.ceil(s * MEL_FPS)) for s in seconds]
    face_len = [max(int(s * FACE_FPS) - 1 - (i % 2), 1) for i, s in enumerate(seconds)]
    mel, mel_off = stamped(mel_len, MEL_FPS)
    face, face_off = stamped(face_len, FACE_FPS)
    vec = torch.tensor([[0.0, s] for s in seconds])
    ones = torch.ones(n, dtype=torch.bool)
    face_present = ones.clone()
    face_present[list(face_missing)] = False
    y = torch.arange(n) % 2
    mods = {
        "mel": ModalityData("mel", "logmel", "k1", "frames", ones, values=mel, offsets=mel_off,
                            attrs={"hop_seconds": 1 / MEL_FPS}),
        "face": ModalityData("face", "landmarks", "k2", "frames", face_present, values=face, offsets=face_off),
        "vec": ModalityData("vec", "egemaps", "k3", "pooled", ones, x=vec),
    }
    return TrainData([f"s{i}" for i in range(n)], np.array(["train"] * n), ["a"] * n, ["a", "b"], False,
                     y, ones, y, 2, mods, "fp", "<memory>", torch.device("cpu"))


def identity_source(data: TrainData, rates: dict[str, float]) -> P.ViewSource:
    return P.ViewSource({m: d.values for m, d in data.modalities.items() if d.x is None}, rates)


def loop_views(data: TrainData, rows: list[int], t0: torch.Tensor, seconds: float,
               rates: dict[str, float]) -> dict[str, list[list[torch.Tensor]]]:
    """Plain per-sample reference: cut each (row, view) window with Python ints and slicing."""
    out = {}
    for m, rate in rates.items():
        d = data.modalities[m]
        width = max(int(round(seconds * rate)), 1)
        per_row = []
        for b, i in enumerate(rows):
            lo, hi = int(d.offsets[i]), int(d.offsets[i + 1])
            clip = d.values[lo:hi]
            common = min((data.modalities[k].offsets[i + 1] - data.modalities[k].offsets[i]).item() / r
                         for k, r in rates.items() if data.modalities[k].present[i])
            length = min(max(int(round(min(seconds, common) * rate)), 1), width, len(clip))
            cuts = []
            for v in range(t0.shape[1]):
                start = int(round(float(t0[b, v]) * rate))
                start = max(min(start, len(clip) - length), 0)
                cuts.append(clip[start:start + length])
            per_row.append(cuts)
        out[m] = per_row
    return out


# --------------------------------------------------------------------------- aligned views


@pytest.mark.parametrize("seconds", [1.0, 3.0])
def test_view_builder_aligns_windows_across_modalities_2view_2view(seconds):
    data = timed_data([3.5, 4.2, 2.0, 6.0, 3.01, 0.7, 5.5], face_missing=(6,))
    rates = P.frame_rates(data, {"face": FACE_FPS})
    assert rates == {"mel": pytest.approx(MEL_FPS), "face": FACE_FPS}
    idx = torch.arange(7)
    views = P.view_inputs(data, idx, seconds, identity_source(data, rates), torch.Generator().manual_seed(0))
    frame = max(1 / MEL_FPS, 1 / FACE_FPS)
    mel, face = views["mel"], views["face"]
    assert mel.values.shape[:3] == (7, 2, round(seconds * MEL_FPS))
    assert face.values.shape[:3] == (7, 2, round(seconds * FACE_FPS))
    for i in range(6):  # row 6 has no face: its windows follow the mel alone
        for v in range(2):
            m_times = mel.values[i, v, :mel.lengths[i, v], 0]
            f_times = face.values[i, v, :face.lengths[i, v], 0]
            # the positive pair (mel view v, face view v) covers the same seconds, within one frame
            assert abs(float(m_times[0]) - float(f_times[0])) <= frame + 1e-6
            assert abs(float(m_times[-1]) + 1 / MEL_FPS - float(f_times[-1]) - 1 / FACE_FPS) <= frame + 1e-6
            # and each is the requested window (or the whole clip when it is shorter)
            face_seconds = float(data.modalities["face"].offsets[i + 1] - data.modalities["face"].offsets[i]) / FACE_FPS
            covered = min(seconds, face_seconds)  # the face track is the shorter one
            assert float(m_times[-1]) + 1 / MEL_FPS - float(m_times[0]) == pytest.approx(covered, abs=frame)
    # the two views are independent windows: some rows differ between view 0 and view 1
    assert (mel.values[:5, 0, 0, 0] != mel.values[:5, 1, 0, 0]).any()
    # a pooled modality is one vector for both views (V = 1 to the loss)
    assert torch.equal(views["vec"], data.modalities["vec"].x)


def test_view_builder_matches_per_sample_loop_reference():
    data = timed_data([3.5, 4.2, 2.0, 6.0, 3.01, 0.7])
    rates = P.frame_rates(data, {"face": FACE_FPS})
    rows = [5, 0, 3, 3, 1]
    idx = torch.tensor(rows)
    views = P.view_inputs(data, idx, 2.0, identity_source(data, rates), torch.Generator().manual_seed(7))
    # the same draw, replayed: the batched cut equals the per-sample loop frame for frame
    t0 = draw_windows(P.clip_duration(data, idx, rates), 2.0, 2, torch.Generator().manual_seed(7))
    ref = loop_views(data, rows, t0, 2.0, rates)
    for m in rates:
        for b in range(len(rows)):
            for v in range(2):
                got = views[m].values[b, v, :views[m].lengths[b, v]]
                assert torch.equal(got, ref[m][b][v]), (m, b, v)
                assert torch.all(views[m].values[b, v, views[m].lengths[b, v]:] == 0)


def test_view_align_pooled_1view_2view_positive_is_the_same_window():
    """A pooled modality (1 view, the whole clip) facing a 2-view sequence: its vector stands for
    both windows, and the positive of each is the partner's SAME window (which it contains)."""
    e = torch.eye(3, dtype=torch.float64)
    # sample 0: pooled = e0; partner windows: w0 = e0, w1 = e1; sample 1: pooled = e2, windows e2, e1
    pooled = torch.stack([e[0], e[2]]).unsqueeze(1)
    seq = torch.stack([torch.stack([e[0], e[1]]), torch.stack([e[2], e[1]])])
    # pooled → seq: anchor (0, w0): positive e0 (s = 1), other window left out, candidates of
    # sample 1: e2 (0), e1 (0): ℓ = log(e + 2) − 1. Anchor (0, w1): positive e1 (s = 0), other
    # window left out, candidates e2 (0), e1 (0): ℓ = log 3. Sample 1 mirrors sample 0.
    # seq → pooled (V = 1): anchor (0, w0) = e0: positive e0 (1), candidate e2 (0): log(e + 1) − 1;
    # anchor (0, w1) = e1: positive e0 (0), candidate e2 (0): log 2. Sample 1 mirrors it.
    one_way = (math.log(math.e + 2) - 1 + math.log(3)) / 2
    other_way = (math.log(math.e + 1) - 1 + math.log(2)) / 2
    got = pairwise_infonce({"pooled": pooled, "seq": seq}, temperature=1.0)
    assert got.item() == pytest.approx((one_way + other_way) / 2, abs=1e-12)
    # the view builder gives the pooled modality once and the sequences two aligned windows
    data = timed_data([3.5, 4.2])
    rates = P.frame_rates(data, {"face": FACE_FPS})
    views = P.view_inputs(data, torch.arange(2), 1.0, identity_source(data, rates), torch.Generator().manual_seed(1))
    assert views["vec"].shape == (2, 2) and views["mel"].lengths.shape == (2, 2)
    for i in range(2):  # the pooled vector's span [0, end] contains both windows
        for v in range(2):
            t = views["mel"].values[i, v, :views["mel"].lengths[i, v], 0]
            assert 0 <= float(t[0]) and float(t[-1]) <= float(views["vec"][i, 1])


def test_view_align_short_clip_gives_the_seconds_all_modalities_cover():
    data = timed_data([0.7])  # mel: 70 frames = 0.70 s; face: 19 frames at 29.97 fps = 0.634 s
    rates = P.frame_rates(data, {"face": FACE_FPS})
    views = P.view_inputs(data, torch.tensor([0]), 3.0, identity_source(data, rates), torch.Generator().manual_seed(0))
    face_n = int(data.modalities["face"].offsets[1])
    mel_n = round(face_n / FACE_FPS * MEL_FPS)
    assert views["face"].lengths.tolist() == [[face_n, face_n]]
    assert views["mel"].lengths.tolist() == [[mel_n, mel_n]]  # cut to the face's 0.634 s, not all 0.70 s
    assert torch.equal(views["mel"].values[0, 1, :mel_n], data.modalities["mel"].values[:mel_n])


def test_frame_rate_is_required_for_sequences_without_one():
    data = timed_data([3.0, 4.0])
    with pytest.raises(TrainingError, match=r"modality 'face'.*train\.mpuc\.frame_rates\.face"):
        P.frame_rates(data, {})
    assert P.frame_rates(data, {"face": 25.0, "other": 10.0})["face"] == 25.0  # untrained names ignored


# --------------------------------------------------------------------------- the original loss


def original_supcon(features: torch.Tensor, features_contrast: torch.Tensor, labels: torch.Tensor | None = None,
                    temperature: float = 0.07, base_temperature: float = 0.07) -> torch.Tensor:
    """Port of the original code's SupConLoss.forward (utils/SupConSeparate.py, contrast_mode
    'all', integer labels or none), kept as close to the original as possible."""
    batch_size = features.shape[0]
    if labels is None:
        mask = torch.eye(batch_size, dtype=features.dtype)
    else:
        labels = labels.contiguous().view(-1, 1)
        mask = torch.eq(labels, labels.T).to(features.dtype)
    contrast_count = features.shape[1]
    contrast_feature = torch.cat(torch.unbind(features_contrast, dim=1), dim=0)
    anchor_feature = torch.cat(torch.unbind(features, dim=1), dim=0)
    anchor_count = contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, contrast_feature.T), temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    logits_mask = torch.scatter(torch.ones_like(mask), 1, torch.arange(batch_size * anchor_count).view(-1, 1), 0)
    mask = mask * logits_mask
    exp_logits = torch.exp(logits) * logits_mask
    log_prob = logits - torch.log(exp_logits.sum(1, keepdim=True))
    mean_log_prob_pos = (mask * log_prob).sum(1) / (mask.sum(1) + 1)
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.view(anchor_count, batch_size).mean()


def original_objective(z: dict[str, torch.Tensor], labels: torch.Tensor | None = None) -> torch.Tensor:
    """The original train loop: normalise each modality's two views, mean over ordered pairs."""
    feats = [F.normalize(t, dim=-1) for t in z.values()]
    total, count = 0.0, 0
    for a, fa in enumerate(feats):
        for b, fb in enumerate(feats):
            if a != b:
                total = total + original_supcon(fa, fb, labels)
                count += 1
    return total / count


def aligned_projections(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Projections z of real aligned views: the view builder + an MPUC model (TCN + MLP)."""
    torch.manual_seed(seed)
    data = timed_data([3.5, 4.2, 2.0, 6.0, 3.01, 2.7, 5.0, 4.4])
    data.modalities["mel"].values = data.modalities["mel"].values.expand(-1, 128).contiguous() \
        + 0.1 * torch.randn(data.modalities["mel"].values.shape[0], 128)
    data = data.select(["mel", "vec"])
    train = TrainConfig(model="mpuc", mpuc=MpucConfig(dim=16, tcn_channels=8, tcn_hidden=8))
    model = MPUC(**MPUC.from_config(train, data.inputs(), 2)).eval()
    source = P.view_source(model, data, P.frame_rates(data, {}))
    views = P.view_inputs(data, torch.arange(8), 1.0, source, torch.Generator().manual_seed(seed))
    present = {m: d.present for m, d in data.modalities.items()}
    z = model.project_views(views, present, prepared=True)
    z["vec"] = z["vec"].expand(-1, 2, -1)  # the original fed every modality two views
    return {m: t.double().detach() for m, t in z.items()}, data.y


def test_original_quirks_equal_the_original_loss_on_aligned_views():
    z, y = aligned_projections()
    got = pairwise_infonce(z, temperature=0.07, quirks=True)
    assert got.item() == pytest.approx(original_objective(z).item(), abs=1e-10)
    # the labelled loss the shipped RAVDESS configuration ran: pairwise_supcon(quirks=True)
    got = pairwise_supcon(z, y, temperature=0.07, quirks=True)
    assert got.item() == pytest.approx(original_objective(z, y).item(), abs=1e-10)
    # mer's defaults differ from both (documented: positive = same window; no + 1)
    assert abs(pairwise_infonce(z).item() - original_objective(z).item()) > 0.1
    assert pairwise_supcon(z, y).item() - original_objective(z, y).item() > 0.3


# --------------------------------------------------------------------------- landmarks, once per clip


def landmark_branch() -> tuple[Branch, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    br = Branch("stgcn", 102, ragged=True, dim=16, stgcn_channels=(8, 8)).eval()
    mean, std = torch.rand(102), torch.rand(102) + 0.5
    br.set_input_stats(mean, std)
    lengths = [40, 25, 33]
    raw = torch.rand(sum(lengths), 102) * torch.linspace(0.2, 1.0, sum(lengths)).unsqueeze(1)  # ranges drift in time
    raw[[3, 50, 51]] = 0.0  # failed frames, stored as zeros
    offsets = torch.tensor([0] + list(np.cumsum(lengths)), dtype=torch.long)
    return br, (raw - mean) / std, offsets


def test_landmarks_are_normalised_per_clip_identically_in_pretraining_and_evaluation():
    br, values, offsets = landmark_branch()
    idx = torch.arange(3)
    whole = pad_rows(values, offsets, idx)
    # evaluation: whole clips, normalised over the clip
    pts, valid = br.landmark_input(whole.values, whole.lengths)
    # pre-training: views are cut from clip_frames, prepared once per clip
    prepared = br.clip_frames(values, offsets)
    for i in range(3):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        n = hi - lo
        assert torch.allclose(prepared[lo:hi].view(n, 51, 2), pts[i, :n], atol=1e-6)
        # a crop of the prepared frames is a slice of the clip's normalisation, not its own
        crop = prepared[lo + 5:lo + 20].unsqueeze(0)
        cpts, cvalid = br.landmark_input(crop, torch.tensor([15]), prepared=True)
        assert torch.allclose(cpts[0], pts[i, 5:20], atol=1e-6) and torch.equal(cvalid[0], valid[i, 5:20])
        own = minmax_per_clip(cpts, cvalid)  # what per-crop normalisation would have given
        assert (own - cpts).abs().max() > 1e-3
    # the encoder sees the same numbers: a full-length prepared view embeds like the whole clip
    view = Padded(prepared[:40].unsqueeze(0).unsqueeze(0), torch.tensor([[40]]))
    assert torch.allclose(br.encode_views(view, prepared=True)[0, 0], br.embed_whole(whole)[0], atol=1e-5)


def test_minmax_ragged_equals_padded_minmax():
    g = torch.Generator().manual_seed(3)
    lengths = [7, 1, 12, 4]
    x = torch.rand(sum(lengths), 5, 2, generator=g) * 3 - 1
    valid = torch.rand(sum(lengths), generator=g) > 0.3
    valid[7] = False  # a clip with no valid frame
    offsets = torch.tensor([0] + list(np.cumsum(lengths)), dtype=torch.long)
    flat = minmax_ragged(x, offsets, valid)
    padded = pad_rows(x.flatten(1), offsets, torch.arange(4))
    pmask = pad_rows(valid.unsqueeze(1).float(), offsets, torch.arange(4)).values[..., 0] > 0
    ref = minmax_per_clip(padded.values.view(4, -1, 5, 2), pmask)
    for i, n in enumerate(lengths):
        lo = int(offsets[i])
        assert torch.allclose(flat[lo:lo + n], ref[i, :n], atol=1e-6)


# --------------------------------------------------------------------------- the original's other parts


def test_original_adjacency_has_two_self_loops():
    a = adjacency(51, face_edges())
    deg = a.sum(axis=1)
    paper, original = face_adjacency("paper"), face_adjacency("original")
    assert np.allclose(np.diag(paper), 1 / (deg + 1)) and np.allclose(np.diag(original), 2 / (deg + 2))
    i, j = face_edges()[0]
    assert original[i, j] == pytest.approx(1 / math.sqrt((deg[i] + 2) * (deg[j] + 2)))
    with pytest.raises(ValueError, match="style"):
        face_adjacency("kipf")


def test_tcn_input_layer_norm_makes_it_invariant_to_clip_gain_and_offset():
    torch.manual_seed(0)
    x = torch.randn(2, 30, 128)
    lengths = torch.tensor([30, 17])
    tcn = TCNEncoder(channels=8, hidden=16).eval()
    assert torch.allclose(tcn(3 * x + 5, lengths), tcn(x, lengths), atol=1e-4)
    plain = TCNEncoder(channels=8, hidden=16, input_norm=False).eval()
    assert not torch.allclose(plain(3 * x + 5, lengths), plain(x, lengths), atol=1e-2)
    # dropout 0.1 is active in training only
    tcn.train()
    assert not torch.equal(tcn(x, lengths), tcn(x, lengths))


def small_run_config(**mpuc) -> TrainConfig:
    opts = dict(dim=16, tcn_channels=8, tcn_hidden=8, crop_seconds=1.0, select="none", batch_size=4)
    opts.update(mpuc)
    return TrainConfig(model="mpuc", mpuc=MpucConfig(**opts))


def mel_vec_data() -> TrainData:
    torch.manual_seed(0)
    data = timed_data([3.5, 4.2, 2.0, 6.0, 3.01, 2.7, 5.0, 4.4])
    mel = data.modalities["mel"]
    mel.values = torch.randn(mel.values.shape[0], 128)
    return data.select(["mel", "vec"])


def test_step_lr_and_progress_lines_under_quiet():
    data = mel_vec_data()
    train = small_run_config(pretrain_epochs=7, lr_step=3, lr_gamma=0.5, crop_seconds=0.2)
    model = MPUC(**MPUC.from_config(train, data.inputs(), 2))
    lines: list[str] = []
    result = P.pretrain(model, data, train, seed=0, progress=False, log=lines.append)
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([1e-3] * 3 + [5e-4] * 3 + [2.5e-4])
    # without a bar: one line per block of ~a tenth of the epochs, and the last epoch
    assert [P.progress_block(e) for e in (100, 20, 7, 1)] == [10, 2, 1, 1]
    epoch_lines = [line for line in lines if "epoch" in line and "/7" in line]
    assert [int(line.split("epoch ")[1].split("/")[0]) for line in epoch_lines] == list(range(1, 8))
    assert "loss" in epoch_lines[-1] and "lr 0.00025" in epoch_lines[-1]
    assert "2 time-aligned windows of 0.2 s (mel 100 fps = 20 frames)" in lines[0]
    # lr_step 0: constant
    train = small_run_config(pretrain_epochs=2, lr_step=0, crop_seconds=0.1)
    result = P.pretrain(MPUC(**MPUC.from_config(train, data.inputs(), 2)), data, train, seed=0, progress=False)
    assert [r["lr"] for r in result.history] == [1e-3] * 2
