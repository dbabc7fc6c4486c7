"""``hf-vision`` and ``hf-video`` on tiny random models (built from a config, saved with
save_pretrained, loaded through the real from_pretrained path): batched = one-at-a-time, layer
selection, keys (face-crop settings included), frame sampling, face crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from mer.features.base import SampleError  # noqa: E402
from mer.features.batching import make_batches  # noqa: E402
from mer.features.hf_video import HFVideoEncoder, cut_clips  # noqa: E402
from mer.features.hf_video import Options as VideoOptions  # noqa: E402
from mer.features.hf_vision import HFVisionEncoder  # noqa: E402
from mer.features.hf_vision import Options as VisionOptions  # noqa: E402
from mer.features.hf_visual import square_crop  # noqa: E402
from kit.video import write_video  # noqa: E402

CPU = torch.device("cpu")


def build_clip_vision(folder: Path, full: bool = False, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    if full:
        CLIPModel(CLIPConfig(vision_config=vision, text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                                                   num_attention_heads=2, vocab_size=99),
                             projection_dim=16)).save_pretrained(folder)
    else:
        CLIPVisionModel(CLIPVisionConfig(**vision)).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def build_videomae(folder: Path) -> Path:
    from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

    torch.manual_seed(0)
    VideoMAEModel(VideoMAEConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=32, patch_size=8, num_frames=4, tubelet_size=2)).save_pretrained(folder)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("visual")
    return {"clip": build_clip_vision(base / "clip"), "full": build_clip_vision(base / "full", full=True),
            "videomae": build_videomae(base / "videomae")}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[dict]:
    """Three clips of 5, 9 and 13 frames at 10 fps with moving random textures."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate((5, 9, 13)):
        base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        frames = [np.roll(base, 3 * k, axis=1) for k in range(n)]
        path = write_video(folder / f"v{i}.mkv", frames, fps=10, codec="ffv1")
        rows.append({"id": f"v{i}", "video": str(path), "start": float("nan"), "end": float("nan")})
    return rows


def vision(folder: Path, **kw) -> HFVisionEncoder:
    enc = HFVisionEncoder(VisionOptions(model=str(folder), fps=10, **kw))
    enc.load(CPU)
    return enc


def video(folder: Path, **kw) -> HFVideoEncoder:
    enc = HFVideoEncoder(VideoOptions(model=str(folder), fps=10, **kw))
    enc.load(CPU)
    return enc


def one_at_a_time(encoder, rows):
    return {r["id"]: encoder.encode([encoder.prepare(r)])[0] for r in rows}


def pipeline(encoder, rows):
    """What the orchestrator does: cost -> make_batches(policy) -> prepare -> encode per batch."""
    by_id = {r["id"]: r for r in rows}
    batches = make_batches({r["id"]: encoder.cost(r) for r in rows}, encoder.batch_policy())
    out = {}
    for batch in batches:
        out.update(zip(batch, encoder.encode([encoder.prepare(by_id[i]) for i in batch])))
    return out, batches


@pytest.mark.parametrize("token", ["cls", "mean"])
def test_vision_batched_equals_one_at_a_time(models, videos, token):
    # 4 images per model call: calls straddle clip boundaries
    enc = vision(models["clip"], token=token, max_batch=3, max_batch_frames=4, store_frames=True)
    single = one_at_a_time(enc, videos)
    out, batches = pipeline(enc, videos)
    assert batches == [["v0", "v1", "v2"]]
    for r in videos:
        assert out[r["id"]]["pooled"].shape == (32,)
        np.testing.assert_allclose(out[r["id"]]["pooled"], single[r["id"]]["pooled"], atol=1e-4)
        np.testing.assert_allclose(out[r["id"]]["frames"], single[r["id"]]["frames"], atol=1e-4)
    assert out["v2"]["frames"].shape == (13, 32) and out["v2"]["time"] == pytest.approx(np.arange(13) / 10, abs=1e-4)
    # pooled = the mean of the per-frame embeddings
    np.testing.assert_allclose(out["v1"]["pooled"], out["v1"]["frames"].mean(axis=0), atol=1e-5)


def test_vision_equals_the_model_on_the_processor_output(models, videos):
    """The reference: transformers' own processor + model on the decoded frames, token 0 of the last layer."""
    from transformers import AutoImageProcessor, AutoModel

    from mer.features.video_io import read_frames

    _, frames = read_frames(videos[0]["video"], fps=10)
    proc = AutoImageProcessor.from_pretrained(models["clip"])
    model = AutoModel.from_pretrained(models["clip"]).eval()
    with torch.no_grad():
        ref = model(**proc(images=list(frames), return_tensors="pt")).last_hidden_state[:, 0].mean(dim=0).numpy()
    np.testing.assert_allclose(vision(models["clip"]).encode([vision(models["clip"]).prepare(videos[0])])[0]["pooled"],
                               ref, atol=1e-4)


def test_vision_layers_all_and_full_clip_checkpoint(models, videos):
    last = vision(models["clip"]).encode([vision(models["clip"]).prepare(videos[1])])[0]["pooled"]
    enc = vision(models["clip"], layers="all")
    assert enc.outputs()[0].shape == (3, 32)
    every = enc.encode([enc.prepare(videos[1])])[0]["pooled"]
    np.testing.assert_allclose(every[-1], last, atol=1e-5)
    full = vision(models["full"])  # a whole CLIP model: its vision tower is used
    assert full.encode([full.prepare(videos[0])])[0]["pooled"].shape == (32,)


def test_max_frames_spreads_frames_over_the_window(models, videos):
    enc = vision(models["clip"], max_frames=4, store_frames=True)
    out = enc.encode([enc.prepare(videos[2])])[0]  # 13 frames = 1.3 s at 10 fps -> 4 frames at 4 / 1.3 fps
    assert out["time"] == pytest.approx([0.0, 0.325, 0.65, 0.975], abs=1e-3)


def test_video_batched_equals_one_at_a_time(models, videos):
    enc = video(models["videomae"], max_batch=3, max_batch_clips=2, store_frames=True)
    single = one_at_a_time(enc, videos)
    out, batches = pipeline(enc, videos)
    assert batches == [["v0", "v1", "v2"]]
    for r in videos:
        np.testing.assert_allclose(out[r["id"]]["pooled"], single[r["id"]]["pooled"], atol=1e-4)
    # 5, 9, 13 frames -> 2, 3, 4 clips of 4 frames
    assert [out[r["id"]]["frames"].shape[0] for r in videos] == [2, 3, 4]
    assert out["v2"]["time"] == pytest.approx([0.0, 0.4, 0.8, 1.2], abs=1e-4)
    every = video(models["videomae"], layers="all").encode([enc.prepare(videos[0])])[0]["pooled"]
    np.testing.assert_allclose(every[-1], single["v0"]["pooled"], atol=1e-5)


def test_cut_clips_repeats_the_last_frame():
    frames = [np.full((2, 2, 3), k, np.uint8) for k in range(5)]
    clips = cut_clips(frames, 4)
    assert [[int(f[0, 0, 0]) for f in c] for c in clips] == [[0, 1, 2, 3], [4, 4, 4, 4]]


def test_video_refuses_an_image_model(models):
    with pytest.raises(ValueError, match="num_frames"):
        video(models["clip"])


def test_keys_cover_outputs_and_face_crop_settings(models, tmp_path):
    folder = build_clip_vision(tmp_path / "m")
    key = lambda **kw: HFVisionEncoder(VisionOptions(model=str(folder), **kw)).key()  # noqa: E731
    base = key()
    assert base.startswith("hf-vision-") and key() == base
    assert key(max_batch=4, max_batch_frames=8) == base  # speed only
    changed = [key(fps=4.0), key(token="mean"), key(max_frames=8), key(layers="all"), key(face_crop=True),
               key(face_crop=True, face_margin=0.5), key(store_frames=True)]
    assert len(set(changed + [base])) == len(changed) + 1
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.endswith("post_layernorm.bias"))[0] += 0.5
    model.save_pretrained(folder)
    assert key() != base
    vkey = lambda **kw: HFVideoEncoder(VideoOptions(model=str(models["videomae"]), **kw)).key()  # noqa: E731
    assert vkey(max_batch_clips=2) == vkey() != vkey(face_crop=True) and vkey(fps=4.0) != vkey()


def test_square_crop_is_square_and_clamped():
    rgb = np.arange(100 * 80 * 3, dtype=np.uint32).reshape(100, 80, 3)
    crop = square_crop(rgb, np.array([10.0, 20.0, 30.0, 50.0]), margin=0.25)  # side 30 * 1.5 = 45 around (20, 35)
    assert crop.shape[:2] == (45, 45)
    assert np.array_equal(crop, rgb[12:57, 0:45])  # left would be -2.5: shifted into the image
    assert square_crop(rgb, np.array([0.0, 0.0, 200.0, 200.0]), 0.0).shape[:2] == (80, 80)


def test_face_crop_encodes_faces_and_fails_without_one(models, tmp_path):
    pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    from kit.video import grey_frames, moving_face_frames

    face = write_video(tmp_path / "face.mp4", moving_face_frames(4, (2, 1)), fps=10)
    enc = vision(models["clip"], face_crop=True, store_frames=True)
    out = enc.encode([enc.prepare({"video": str(face)})])[0]
    assert out["frames"].shape == (4, 32)
    plain = vision(models["clip"]).encode([vision(models["clip"]).prepare({"video": str(face)})])[0]
    assert not np.allclose(plain["pooled"], out["pooled"], atol=1e-3)  # the crop, not the frame, was encoded
    blank = write_video(tmp_path / "blank.mp4", grey_frames(3, size=(160, 120)), fps=10)
    with pytest.raises(SampleError, match="no face found in any of 3 sampled frames"):
        enc.prepare({"video": str(blank)})
