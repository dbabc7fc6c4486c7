"""MPUC-MER: encoders (masking, graph), views, contrastive pre-training, the probe, and a run.

Everything runs on tiny synthetic data on the CPU. Torch is pinned to one thread for this
module: the tiny ops here are dominated by OpenMP synchronisation when the CI machine's
cores are shared, and one thread is both faster and deterministic.
"""

from __future__ import annotations

import json
from collections import deque

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from mer.train.config import MpucConfig, TrainConfig
from mer.train.data import ModalityData, TrainData
from mer.train.models.masking import MaskedBatchNorm, MaskedGlobalLayerNorm, length_mask
from mer.train.models.mlp_encoder import MLPEncoder
from mer.train.models.mpuc import MPUC, Branch, LinearProbe, choose_encoder
from mer.train.models.seq_transformer import SeqTransformerEncoder
from mer.train.models.stgcn import (
    FACE_EDGES_68,
    NUM_NODES,
    STGCNEncoder,
    adjacency,
    face_adjacency,
    face_edges,
    minmax_per_clip,
    normalized_adjacency,
)
from mer.train.models.tcn import TCNEncoder
from mer.train import pretrain as P
from mer.train.probe import fit_linear_probe
from mer.train.sequences import Padded, pad_rows, random_crops
from mer.train.trainer import TrainingError


pytestmark = pytest.mark.usefixtures("one_thread_module")


def alone_vs_batched(encoder, x, lengths, **kw):
    """Max |embedding alone − embedding inside the padded batch| over the batch's clips."""
    batched = encoder(x, lengths, **kw)
    worst = 0.0
    for i in range(len(x)):
        t = int(lengths[i])
        extra = {k: v[i:i + 1, :t] for k, v in kw.items()}
        alone = encoder(x[i:i + 1, :t], lengths[i:i + 1], **extra)
        worst = max(worst, float((alone[0] - batched[i]).abs().max().detach()))
    return worst


# --------------------------------------------------------------------------- TCN


def test_tcn_shapes_and_padding_invariance():
    torch.manual_seed(0)
    tcn = TCNEncoder(channels=16, hidden=32, dropout=0.0)  # train mode: no random dropout mask
    x = torch.randn(3, 70, 128)
    lengths = torch.tensor([70, 23, 1])
    x[1, 23:] = 100.0  # garbage in the padding must not matter
    x[2, 1:] = -50.0
    for mode in (False, True):  # gLN uses per-sample statistics: train and eval alike
        tcn.train(mode)
        out = tcn(x, lengths)
        assert out.shape == (3, 512)
        assert alone_vs_batched(tcn, x, lengths) < 1e-5


def test_masked_gln_is_groupnorm_on_valid_steps_and_plain_groupnorm_leaks():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12)
    gln = MaskedGlobalLayerNorm(8)
    gn = torch.nn.GroupNorm(1, 8, eps=1e-8)
    full = torch.ones(2, 1, 12)
    assert torch.allclose(gln(x, full), gn(x), atol=1e-5)
    # sample 0 padded from 5 steps: the masked norm equals GroupNorm of the 5 valid steps ...
    mask = length_mask(torch.tensor([5, 12]), 12).unsqueeze(1).float()
    xp = x.clone()
    xp[0, :, 5:] = 0.0
    assert torch.allclose(gln(xp, mask)[0, :, :5], gn(x[:1, :, :5])[0], atol=1e-5)
    # ... while plain GroupNorm over the padded tensor does not (padding leaks into its statistics)
    assert (gn(xp)[0, :, :5] - gn(x[:1, :, :5])[0]).abs().max() > 1e-2


def test_masked_batchnorm_statistics_count_valid_positions_only():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 10)
    lengths = torch.tensor([10, 6, 2])
    mask = length_mask(lengths, 10).unsqueeze(1).float()
    bn = MaskedBatchNorm(4)
    ref = torch.nn.BatchNorm1d(4)
    out = bn(x, mask)
    valid = torch.cat([x[i, :, : int(lengths[i])] for i in range(3)], dim=1)  # (C, valid steps)
    ref_out = ref(valid.T.contiguous()).T
    got = torch.cat([out[i, :, : int(lengths[i])] for i in range(3)], dim=1)
    assert torch.allclose(got, ref_out, atol=1e-5)
    assert torch.allclose(bn.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, ref.running_var, atol=1e-5)


# --------------------------------------------------------------------------- ST-GCN


def test_normalized_adjacency_matches_hand_computation_on_a_path():
    # path 0 - 1 - 2: A + I has degrees 2, 3, 2
    got = normalized_adjacency(adjacency(3, [(0, 1), (1, 2)]))
    s6 = 1 / np.sqrt(6)
    want = np.array([[1 / 2, s6, 0], [s6, 1 / 3, s6], [0, s6, 1 / 2]])
    assert np.allclose(got, want)


def test_face_graph_is_symmetric_normalised_connected_and_has_the_documented_loops():
    a = face_adjacency()
    assert a.shape == (NUM_NODES, NUM_NODES) == (51, 51)
    assert np.allclose(a, a.T)
    raw = adjacency(NUM_NODES, face_edges())
    deg = raw.sum(axis=1) + 1
    assert np.allclose(a, (raw + np.eye(51)) / np.sqrt(np.outer(deg, deg)))
    edges = {frozenset(e) for e in FACE_EDGES_68}
    for loop in (range(36, 42), range(42, 48), range(48, 60), range(60, 68)):  # eyes, lips: closed
        pts = list(loop)
        for p, q in zip(pts, pts[1:] + pts[:1]):
            assert frozenset((p, q)) in edges, (p, q)
    assert all(17 <= p <= 67 for e in FACE_EDGES_68 for p in e)  # no jaw point
    assert {frozenset((17, 36)), frozenset((33, 51))} <= edges  # brow-to-eye, nose-to-lip
    seen, todo = {0}, deque([0])
    while todo:
        for j in np.flatnonzero(raw[todo.popleft()]):
            if j not in seen:
                seen.add(j)
                todo.append(j)
    assert len(seen) == 51


def test_stgcn_shapes_padding_invariance_and_invalid_frames():
    torch.manual_seed(0)
    enc = STGCNEncoder(hidden=(8, 16))
    x = torch.rand(3, 30, 51, 2) * 200
    lengths = torch.tensor([30, 12, 4])
    enc.train()
    enc(x, lengths).sum().backward()  # updates the running BN statistics
    enc.eval()
    out = enc(x, lengths)
    assert out.shape == (3, 512)
    assert alone_vs_batched(enc, x, lengths) < 1e-5
    # an invalid frame is ignored whatever it holds (NaN included)
    valid = torch.ones(3, 30, dtype=torch.bool)
    valid[0, 7] = False
    y = x.clone()
    y[0, 7] = float("nan")
    same = enc(y, lengths, valid)
    z = x.clone()
    z[0, 7] = 0.0
    assert torch.allclose(same, enc(z, lengths, valid), atol=1e-6)
    assert torch.isfinite(same).all()


def test_landmark_branch_undoes_standardisation_and_drops_zero_frames():
    torch.manual_seed(0)
    br = Branch("stgcn", 102, ragged=True, dim=32, stgcn_channels=(8, 8)).eval()
    mean, std = torch.rand(102), torch.rand(102) + 0.5
    br.set_input_stats(mean, std)
    raw = torch.rand(1, 10, 102)
    raw[0, 3] = 0.0  # a failed frame, stored as zeros by the landmarks encoder
    std_in = (raw - mean) / std
    lengths = torch.tensor([10])
    # the branch sees standardised values; it must hand the graph the raw geometry with the
    # all-zero frame marked invalid
    valid = torch.ones(1, 10, dtype=torch.bool)
    valid[0, 3] = False
    ref = br.encoder(minmax_per_clip(raw.view(1, 10, 51, 2), valid), lengths, valid=valid)  # normalised per clip
    assert torch.allclose(br.encode(Padded(std_in, lengths)), ref, atol=1e-5)
    assert (br.encode(Padded(std_in, lengths)) - br.encoder(raw.view(1, 10, 51, 2), lengths)).abs().max() > 1e-4


def test_seq_transformer_and_mlp_encoder():
    torch.manual_seed(0)
    enc = SeqTransformerEncoder(20, d_model=16, heads=2, layers=2, ff=32).eval()
    x = torch.randn(3, 15, 20)
    lengths = torch.tensor([15, 6, 0])
    out = enc(x, lengths)
    assert out.shape == (3, 512) and torch.isfinite(out).all()
    assert alone_vs_batched(enc, x[:2], lengths[:2]) < 1e-5
    assert MLPEncoder(7)(torch.randn(4, 7)).shape == (4, 512)


def test_encoder_dispatch_rule_and_overrides():
    assert choose_encoder(128, True) == "tcn"
    assert choose_encoder(102, True) == "stgcn"
    assert choose_encoder(136, True) == "stgcn"
    assert choose_encoder(300, True) == "transformer"
    assert choose_encoder(768, False) == "mlp"
    assert choose_encoder(128, True, override="transformer") == "transformer"
    assert choose_encoder(128, True, override="mlp") == "mlp"
    with pytest.raises(ValueError, match="sequence"):
        choose_encoder(768, False, override="tcn", name="text")
    with pytest.raises(ValueError, match="D = 102 or 136"):
        choose_encoder(40, True, override="stgcn")
    with pytest.raises(ValueError, match="landmark"):
        choose_encoder(40, True, family="landmarks")


def test_mpuc_config_validates_encoder_overrides():
    from mer.pipeline.config_schema import ConfigError, from_dict

    cfg = from_dict(TrainConfig, {"model": "mpuc", "mpuc": {"encoders": {"audio": "tcn"}, "crop_seconds": 1.5}}, "x.yaml")
    assert cfg.mpuc.encoders == {"audio": "tcn"} and cfg.mpuc.crop_seconds == 1.5
    # the frame-count key of older configs: a clear migration message, not "unknown key"
    with pytest.raises(ConfigError, match=r"'mpuc.crop' is no longer a key: .*crop_seconds = frames / frame rate"):
        from_dict(TrainConfig, {"mpuc": {"crop": 90}}, "x.yaml")
    with pytest.raises(ConfigError, match="crop_seconds must be > 0"):
        from_dict(TrainConfig, {"mpuc": {"crop_seconds": 0}}, "x.yaml")
    with pytest.raises(ConfigError, match="unknown encoder"):
        from_dict(TrainConfig, {"mpuc": {"encoders": {"audio": "lstm"}}}, "x.yaml")


# --------------------------------------------------------------------------- views


def ragged(lengths, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(int(sum(lengths)), dim, generator=g)
    offsets = torch.tensor([0] + list(np.cumsum(lengths)), dtype=torch.long)
    return values, offsets


def test_pad_rows_matches_a_plain_loop():
    values, offsets = ragged([5, 0, 9, 2])
    idx = torch.tensor([2, 0, 1, 3])
    out = pad_rows(values, offsets, idx)
    assert out.values.shape == (4, 9, 3)
    assert out.lengths.tolist() == [9, 5, 0, 2]
    for b, i in enumerate(idx.tolist()):
        clip = values[offsets[i]:offsets[i + 1]]
        assert torch.equal(out.values[b, : len(clip)], clip)
        assert torch.all(out.values[b, len(clip):] == 0)


def test_random_crops_are_windows_of_the_clip_and_two_views_differ():
    values, offsets = ragged([200, 5])
    gen = torch.Generator().manual_seed(0)
    out = random_crops(values, offsets, torch.tensor([0, 1]), crop=30, views=2, generator=gen)
    assert out.values.shape == (2, 2, 30, 3)
    assert out.lengths.tolist() == [[30, 30], [5, 5]]
    clip = values[:200]
    starts = []
    for v in range(2):  # each view is a contiguous window of the long clip
        window = out.values[0, v]
        match = [s for s in range(171) if torch.equal(clip[s:s + 30], window)]
        assert len(match) == 1
        starts.append(match[0])
    assert starts[0] != starts[1] and not torch.equal(out.values[0, 0], out.values[0, 1])
    # a clip shorter than the crop is used whole, zero-padded, with its true length
    assert torch.equal(out.values[1, 0, :5], values[200:205])
    assert torch.all(out.values[1, :, 5:] == 0)


def test_random_crop_starts_cover_every_position():
    values, offsets = ragged([12])
    gen = torch.Generator().manual_seed(0)
    out = random_crops(values, offsets, torch.zeros(400, dtype=torch.long), crop=10, views=1, generator=gen)
    firsts = {int(torch.nonzero((values == out.values[b, 0, 0]).all(dim=1))[0]) for b in range(400)}
    assert firsts == {0, 1, 2}


def test_pooled_vector_is_a_single_view():
    br = Branch("mlp", 7, ragged=False, dim=16)
    assert br.encode_views(torch.randn(5, 7)).shape == (5, 1, 16)
    seq = Branch("transformer", 6, ragged=True, dim=16, transformer_dim=8, transformer_layers=1)
    values, offsets = ragged([40, 50, 8], dim=6)
    crops = random_crops(values, offsets, torch.arange(3), crop=10, views=2)
    assert seq.encode_views(crops).shape == (3, 2, 16)


# --------------------------------------------------------------------------- pre-training + probe


def synthetic(n=150, classes=3, seed=0, seq_dim=12, nan_splits=(), absent_vec=()):
    """Two modalities = two noisy linear maps of one latent per sample; the latent carries the class.

    ``seq``: ragged (T_i, seq_dim) frames, each the latent's map plus frame noise; ``vec``: one
    16-d vector. Splits: 60 % train, 20 % val, 20 % test. ``nan_splits``: those splits' inputs
    are NaN in BOTH modalities (and still marked present).
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    z = rng.normal(size=(classes, 4))[y] * 1.5 + 0.7 * rng.normal(size=(n, 4))
    a, b = rng.normal(size=(4, seq_dim)), rng.normal(size=(4, 16))
    lengths = rng.integers(10, 40, n)
    split = np.array(["train"] * (n * 3 // 5) + ["val"] * (n // 5) + ["test"] * (n - n * 3 // 5 - n // 5))
    frames = [np.repeat((z[i] @ a)[None], t, 0) + 0.5 * rng.normal(size=(t, seq_dim)) for i, t in enumerate(lengths)]
    vec = z @ b + 0.5 * rng.normal(size=(n, 16))
    for s in nan_splits:
        vec[split == s] = np.nan
        for i in np.flatnonzero(split == s):
            frames[i][:] = np.nan
    present_vec = np.ones(n, dtype=bool)
    present_vec[list(absent_vec)] = False
    vec[~present_vec] = 0.0
    mods = {
        "seq": ModalityData("seq", "test", "k-seq", "frames", torch.ones(n, dtype=torch.bool),
                            values=torch.tensor(np.concatenate(frames), dtype=torch.float32),
                            offsets=torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.long)),
        "vec": ModalityData("vec", "test", "k-vec", "pooled", torch.tensor(present_vec),
                            x=torch.tensor(vec, dtype=torch.float32)),
    }
    names = [f"c{k}" for k in range(classes)]
    return TrainData([f"s{i:04d}" for i in range(n)], split, [names[k] for k in y], names, False,
                     torch.tensor(y), torch.ones(n, dtype=torch.bool), torch.tensor(y), classes, mods,
                     "fingerprint", "<memory>", torch.device("cpu"))


def small_train(**mpuc) -> TrainConfig:
    opts = dict(dim=32, crop_seconds=0.8, frame_rates={"seq": 10.0, "face": 10.0}, pretrain_epochs=8, transformer_dim=16, transformer_layers=1, select="none")
    opts.update(mpuc)
    return TrainConfig(model="mpuc", mpuc=MpucConfig(**opts))


def build(data: TrainData, train: TrainConfig, seed: int = 0) -> MPUC:
    torch.manual_seed(seed)
    kwargs = MPUC.from_config(train, data.inputs(), data.num_classes)
    model = MPUC(**kwargs)
    model.init_kwargs = kwargs
    return model


def test_pretraining_lowers_the_contrastive_loss_and_the_probe_beats_chance():
    data = synthetic(absent_vec=(0, 5, 100))
    train = small_train()
    model = build(data, train)
    assert model.kinds == {"seq": "transformer", "vec": "mlp"}
    rows = P.pretrain_rows(data, "train", labeled_only=False)
    before = P.validation_loss(model, data, rows, train.mpuc, seed=0)
    result = P.fit_mpuc(model, data, train, seed=0, progress=False)
    after = P.validation_loss(model, data, rows, train.mpuc, seed=0)
    assert after < 0.75 * before, (before, after)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert not any(p.requires_grad for p in model.branches.parameters())  # frozen for the probe
    from mer.train.criterion import Criterion
    from mer.train.trainer import score_split

    test = score_split(model, data, "test", Criterion(False))
    assert test["accuracy"] > 0.6  # chance = 1/3
    # absent modality: zeros + presence flag 0 in the probe's features
    feats = model.features(data.batch(torch.tensor([0, 1])).x, {m: d.present[:2] for m, d in data.modalities.items()})
    assert torch.all(feats[0, 32:64] == 0) and feats[0, -1] == 0 and feats[1, -1] == 1


def test_pretraining_never_reads_validation_or_test_inputs():
    data = synthetic(nan_splits=("val", "test"))
    train = small_train(pretrain_epochs=2)
    model = build(data, train)
    result = P.pretrain(model, data, train, seed=0, progress=False)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # selecting on the validation contrastive loss only SCORES val: NaN there is a clear error
    train_sel = small_train(pretrain_epochs=2, select="val_loss")
    with pytest.raises(TrainingError, match="validation"):
        P.pretrain(build(data, train_sel), data, train_sel, seed=0, progress=False)
    # with clean val and NaN test, selection works and nothing non-finite appears
    data = synthetic(nan_splits=("test",))
    model = build(data, train_sel)
    result = P.pretrain(model, data, train_sel, seed=0, progress=False)
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_loss"]) for r in result.history)
    assert 1 <= result.best_epoch <= 2


def test_supervised_and_quirks_losses_train():
    data = synthetic(n=60)
    for opts in ({"loss": "supervised"}, {"original_quirks": True}, {"balanced_sampling": True}):
        train = small_train(pretrain_epochs=1, **opts)
        result = P.pretrain(build(data, train), data, train, seed=0, progress=False)
        assert np.isfinite(result.history[0]["loss"])


def test_tcn_and_stgcn_branches_pretrain_and_embed():
    """log-mel (128) → TCN and flattened landmarks (102) → ST-GCN, through the whole model."""
    rng = np.random.default_rng(0)
    n = 24
    lengths = rng.integers(5, 20, n)
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.long)
    mel = torch.tensor(rng.normal(size=(int(lengths.sum()), 128)), dtype=torch.float32)
    face = torch.tensor(rng.random((int(lengths.sum()), 102)), dtype=torch.float32)
    ones = torch.ones(n, dtype=torch.bool)
    y = torch.tensor(np.arange(n) % 2)
    data = TrainData([f"s{i}" for i in range(n)], np.array(["train"] * 16 + ["val"] * 8), ["a"] * n, ["a", "b"],
                     False, y, ones, y, 2,
                     {"mel": ModalityData("mel", "logmel", "k1", "frames", ones, values=mel, offsets=offsets,
                                          attrs={"hop_seconds": 0.1}),  # the rate comes from the cache
                      "face": ModalityData("face", "landmarks", "k2", "frames", ones, values=face, offsets=offsets)},
                     "fp", "<memory>", torch.device("cpu"))
    train = small_train(pretrain_epochs=1, tcn_channels=8, tcn_hidden=16, stgcn_channels=[8, 8], batch_size=8)
    model = build(data, train)
    assert model.kinds == {"mel": "tcn", "face": "stgcn"}
    result = P.pretrain(model, data, train, seed=0, progress=False)
    assert np.isfinite(result.history[0]["loss"])
    feats = P.embed(model, data, np.arange(n))
    assert feats.shape == (n, 2 * 32 + 2) and np.isfinite(feats).all()
    # whole-clip embedding in length-sorted chunks = one clip at a time
    model.eval()
    one = model.features(data.batch(torch.tensor([5])).x, {"mel": ones[:1], "face": ones[:1]})
    assert np.allclose(feats[5], one[0].detach().numpy(), atol=1e-5)


def test_pretraining_is_reproducible():
    data = synthetic(n=60)
    train = small_train(pretrain_epochs=2)
    a = build(data, train, seed=3)  # seeds torch's global RNG (dropout), as a run does
    P.pretrain(a, data, train, seed=3, progress=False)
    b = build(data, train, seed=3)
    P.pretrain(b, data, train, seed=3, progress=False)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("classes", [3, 2])
def test_linear_probe_is_exactly_the_sklearn_regression(classes):
    rng = np.random.default_rng(0)
    f_train, f_val = rng.normal(size=(80, 6)) * 3 + 1, rng.normal(size=(30, 6)) * 3 + 1
    y_train, y_val = rng.integers(0, classes, 80), rng.integers(0, classes, 30)
    names = [f"c{k}" for k in range(classes)]
    probe = LinearProbe(6, classes)
    res = fit_linear_probe(probe, f_train, y_train, f_val, y_val, names, False, [0.01, 1.0], "macro_f1")
    mean, std = f_train.mean(0), f_train.std(0)
    ref = LogisticRegression(C=res.chosen, class_weight="balanced", max_iter=2000, random_state=0)
    ref.fit((f_train - mean) / std, y_train)
    with torch.no_grad():
        prob = torch.softmax(probe(torch.tensor(f_val, dtype=torch.float32)), dim=1).numpy()
    assert np.allclose(prob, ref.predict_proba((f_val - mean) / std), atol=1e-4)
    assert set(res.scores) == {0.01, 1.0}


def test_multilabel_probe_is_one_regression_per_target():
    rng = np.random.default_rng(1)
    f_train, f_val = rng.normal(size=(90, 5)), rng.normal(size=(30, 5))
    y_train = (rng.random((90, 3)) < 0.4).astype(np.float32)
    y_train[:, 2] = 0.0  # a target never present in training: constant "absent"
    y_val = (rng.random((30, 3)) < 0.4).astype(np.float32)
    probe = LinearProbe(5, 3)
    res = fit_linear_probe(probe, f_train, y_train, f_val, y_val, ["a", "b", "c"], True, [0.1], "wa")
    mean, std = f_train.mean(0), f_train.std(0)
    with torch.no_grad():
        logits = probe(torch.tensor(f_val, dtype=torch.float32)).numpy()
    for k in range(2):
        ref = LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000, random_state=0)
        ref.fit((f_train - mean) / std, y_train[:, k])
        assert np.allclose(logits[:, k], ref.decision_function((f_val - mean) / std), atol=1e-4)
    assert np.all(logits[:, 2] < -10)
    assert np.isfinite(res.val_score)


# --------------------------------------------------------------------------- a full run


def test_run_writes_outputs_and_model_pt_reloads(tmp_path):
    from mer.pipeline.adapters import config_class
    from mer.config import ExperimentConfig
    from mer.train.criterion import Criterion
    from mer.train.evaluate import build_model, load_checkpoint
    from mer.pipeline.manifest import Manifest
    from mer.train.job import TrainJob
    from mer.train.run import train_one
    from mer.train.trainer import predict_rows

    data = synthetic(n=90)
    config = ExperimentConfig(dataset=config_class("demo")(), train=small_train(pretrain_epochs=2, probe="mlp"))
    config.train.epochs = 5
    config.train.lr = 1e-3
    # the manifest the synthetic data stands for (the protocol card reads its groups)
    manifest = Manifest(pd.DataFrame({"id": data.ids, "label": data.label_text, "split": data.split,
                                      "group": [f"spk{i % 30}" if s == "train" else f"{s}{i % 5}"
                                                for i, s in enumerate(data.split)]}))
    job = TrainJob(train=config.train, manifest=manifest, manifest_path=tmp_path / "manifest.csv", sources={},
                   record=config.to_dict())
    result = train_one(job, data, tmp_path / "run", 0, progress=False, log=lambda s: None)
    run = tmp_path / "run"
    for name in ("metrics.json", "predictions.csv", "confusion.png", "model.pt", "history.csv"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == result.metrics["test"]["accuracy"]
    assert saved["protocol"]["groups"]["test"] == [f"test{k}" for k in range(5)]
    ckpt = load_checkpoint(run)
    assert ckpt["model"] == "mpuc" and ckpt["init_kwargs"]["probe"] == "mlp"
    model = build_model(ckpt)  # what `mer evaluate` does
    rows = data.rows("test")
    _, pred = predict_rows(model, data, rows, Criterion(False))
    from mer.train.metrics import compute_metrics

    again = compute_metrics(data.y[rows].numpy(), pred, data.classes, False, "test")
    assert again["accuracy"] == saved["test"]["accuracy"]
    assert again["confusion"] == saved["test"]["confusion"]
