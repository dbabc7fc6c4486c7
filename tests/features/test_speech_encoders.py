"""hf-audio beyond Wav2Vec2: Whisper (log-mel input_features padded to a fixed length) and the other
speech families users name (HuBERT, WavLM, data2vec-audio, Wav2Vec2-BERT), each as a tiny random
model built from a config, saved with save_pretrained and loaded through the encoder's real
from_pretrained path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mer.features.audio_io import load_audio
from mer.features.batching import make_batches
from mer.features.hf_audio import ENCODER, Options
from kit.corpora import write_tone_clips

CPU = torch.device("cpu")
SR = 16000
HOP = 160
#: the tiny Whisper's fixed input: 1 s (the released models' 30 s, scaled down)
CHUNK_SECONDS = 1


def build_whisper(folder: Path, seed: int = 0) -> Path:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    frames = CHUNK_SECONDS * SR // HOP  # mel frames of the fixed input
    config = WhisperConfig(vocab_size=64, num_mel_bins=16, d_model=32, encoder_layers=2, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37,
                           decoder_ffn_dim=37, max_source_positions=frames // 2, max_target_positions=16,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=16, sampling_rate=SR, hop_length=HOP, chunk_length=CHUNK_SECONDS,
                            n_fft=400).save_pretrained(folder)
    return folder


def _waveform_conv() -> dict:
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def build_family(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny random model of ``family`` with the feature extractor its released checkpoints use."""
    import transformers as tf

    torch.manual_seed(seed)
    if family == "wav2vec2-bert":
        config = tf.Wav2Vec2BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                                       feature_projection_input_dim=160, output_hidden_size=32, conv_depthwise_kernel_size=5,
                                       position_embeddings_type="relative_key", left_max_position_embeddings=8,
                                       right_max_position_embeddings=8)
        tf.Wav2Vec2BertModel(config).save_pretrained(folder)
        tf.SeamlessM4TFeatureExtractor(feature_size=80, sampling_rate=SR, num_mel_bins=80, stride=2).save_pretrained(folder)
        return folder
    # as released: HuBERT-base is group norm without a mask; WavLM, data2vec-audio layer norm with one
    models = {"hubert": (tf.HubertConfig, tf.HubertModel, {"feat_extract_norm": "group"}),
              "wavlm": (tf.WavLMConfig, tf.WavLMModel, {"feat_extract_norm": "layer", "do_stable_layer_norm": True,
                                                       "num_buckets": 16, "max_bucket_distance": 64}),
              "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel, {"num_conv_pos_embeddings": 5,
                                                                                "conv_pos_kernel_size": 5})}
    config_class, model_class, extra = models[family]
    config = config_class(**{**_waveform_conv(), **extra})
    model_class(config).save_pretrained(folder)
    mask = family != "hubert"
    tf.Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True, return_attention_mask=mask).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return build_whisper(tmp_path_factory.mktemp("whisper") / "model")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[dict]:
    """WAV rows of 0.30, 0.45, 0.62, 0.80 and 2.50 s (the last longer than the tiny Whisper's 1 s input)."""
    return write_tone_clips(tmp_path_factory.mktemp("clips"), [0.30, 0.45, 0.62, 0.80, 2.50], seed=1, sr=SR)


def make(path: Path, **kw) -> ENCODER:
    encoder = ENCODER(Options(model=str(path), **kw))
    encoder.load(CPU)
    return encoder


def through_batches(encoder, rows) -> tuple[dict, list[list[str]]]:
    """What the orchestrator does: cost -> make_batches(policy) -> prepare -> encode per batch."""
    costs = {r["id"]: encoder.cost(r) for r in rows}
    by_id = {r["id"]: r for r in rows}
    batches = make_batches(costs, encoder.batch_policy())
    out = {}
    for batch in batches:
        for sample_id, result in zip(batch, encoder.encode([encoder.prepare(by_id[i]) for i in batch])):
            out[sample_id] = result
    return out, batches


def alone(encoder, rows) -> dict:
    return {r["id"]: encoder.encode([encoder.prepare(r)])[0] for r in rows}


# --- Whisper ------------------------------------------------------------------------------------
def test_whisper_pools_the_real_audio_frames_only(whisper_dir, clips):
    from transformers import WhisperModel

    encoder = make(whisper_dir, store_frames=True)
    assert encoder.layout is not None and encoder.layout.fixed_samples == SR * CHUNK_SECONDS
    assert encoder.outputs()[0].shape == (32,) and not encoder.padding_sensitive
    reference = WhisperModel.from_pretrained(whisper_dir).get_encoder().eval()
    for row in clips[:4]:
        samples = load_audio(row["audio"], SR)
        prepared = encoder.prepare(row)
        # by hand: mel frames whose centre lies in the clip, then the two convolutions' stride 2
        mel = math.ceil(len(samples) / HOP)
        assert prepared.frames == [math.ceil(mel / 2)] and prepared.features[0].shape == (16, 100)
        padded = np.zeros(SR * CHUNK_SECONDS, np.float32)
        padded[: len(samples)] = samples  # Whisper's own padding: silence up to its fixed length
        from transformers import WhisperFeatureExtractor

        features = WhisperFeatureExtractor.from_pretrained(whisper_dir)(padded, sampling_rate=SR, return_tensors="pt")
        with torch.inference_mode():
            hidden = reference(features.input_features).last_hidden_state[0]
        assert hidden.shape[0] == 50
        out = encoder.encode([prepared])[0]
        n = math.ceil(mel / 2)
        np.testing.assert_allclose(out["frames"], hidden[:n].numpy(), atol=1e-5)
        np.testing.assert_allclose(out["pooled"], hidden[:n].mean(0).numpy(), atol=1e-5)
        assert np.abs(out["pooled"] - hidden.mean(0).numpy()).max() > 1e-3  # the padding is not pooled


def test_whisper_batched_equals_one_at_a_time(whisper_dir, clips):
    """Every window is padded to the fixed length, so batching adds no padding and a clip's
    vector does not depend on its batch-mates beyond float32 rounding: oneDNN picks its
    convolution kernel by batch size, which moves the last bits (observed 3e-8), so the
    tolerance is 1e-6. The CPU default (one clip per model call) never batches at all."""
    encoder = make(whisper_dir, max_batch=8, layers="all")
    single = alone(encoder, clips)
    batched = encoder.encode([encoder.prepare(r) for r in clips])
    out, batches = through_batches(encoder, clips)
    assert max(len(b) for b in batches) == len(clips)  # all in one batch, lengths 0.3 s to 2.5 s
    for r, b in zip(clips, batched):
        for got in (b["pooled"], out[r["id"]]["pooled"]):
            assert got.shape == (3, 32)
            np.testing.assert_allclose(got, single[r["id"]]["pooled"], rtol=0, atol=1e-6)
    assert make(whisper_dir).batch_policy().max_items == 1


def test_whisper_long_clip_is_encoded_in_windows(whisper_dir, clips):
    encoder = make(whisper_dir, store_frames=True)
    row = clips[4]  # 2.5 s: three windows of 1/3 of the clip each, never truncated to the 1 s input
    prepared = encoder.prepare(row)
    n = len(prepared.samples)
    assert [(a, b) for a, b in prepared.bounds] == [(0, 13334), (13334, 26668), (26668, n)] and n == 40000
    expected = [math.ceil(math.ceil((b - a) / HOP) / 2) for a, b in prepared.bounds]
    assert prepared.frames == expected
    out = encoder.encode([prepared])[0]
    assert out["frames"].shape == (sum(expected), 32)
    np.testing.assert_allclose(out["pooled"], out["frames"].mean(axis=0), atol=1e-6)
    # each window is exactly that window encoded on its own
    for (a, b), count, start in zip(prepared.bounds, expected, np.cumsum([0] + expected[:-1])):
        piece = encoder.prepare({"audio": row["audio"], "start": a / SR, "end": b / SR})
        assert piece.frames == [count]
        np.testing.assert_allclose(out["frames"][start:start + count], encoder.encode([piece])[0]["frames"], atol=1e-6)
    # a shorter max_seconds makes more windows; it never exceeds the model's fixed input
    assert len(make(whisper_dir, max_seconds=0.5).prepare(row).bounds) == 5
    assert make(whisper_dir, max_seconds=600.0).window_samples == SR * CHUNK_SECONDS


def test_whisper_layers_all_last_row_is_last(whisper_dir, clips):
    last = make(whisper_dir)
    every = make(whisper_dir, layers="all")
    assert every.outputs()[0].shape == (3, 32) and every.outputs()[0].attrs["layers"] == [0, 1, 2]
    a = last.encode([last.prepare(clips[2])])[0]["pooled"]
    b = every.encode([every.prepare(clips[2])])[0]["pooled"]
    np.testing.assert_allclose(b[-1], a, atol=1e-6)
    assert np.abs(b[0] - b[-1]).max() > 1e-3  # really other layers
    picked = make(whisper_dir, layers=[1]).encode([every.prepare(clips[2])])[0]["pooled"]
    np.testing.assert_allclose(picked[0], b[1], atol=1e-6)


def test_whisper_dither_is_refused(tmp_path):
    import json

    folder = build_whisper(tmp_path / "m")
    config = json.loads((folder / "preprocessor_config.json").read_text())
    config["dither"] = 1e-4
    (folder / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="dither"):
        make(folder)


def test_whisper_key_changes_with_weights_and_options(tmp_path):
    folder = build_whisper(tmp_path / "m")
    a = ENCODER(Options(model=str(folder)))
    assert a.key() == ENCODER(Options(model=str(folder), max_batch=4)).key() and a.key().startswith("hf-audio-")
    assert ENCODER(Options(model=str(folder), max_seconds=0.5)).key() != a.key()
    from transformers import WhisperModel

    model = WhisperModel.from_pretrained(folder)
    with torch.no_grad():
        model.encoder.layers[0].fc1.bias[0] += 0.5
    model.save_pretrained(folder)
    assert ENCODER(Options(model=str(folder))).key() != a.key()


# --- the other families --------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["hubert", "wavlm", "data2vec-audio", "wav2vec2-bert"])
def test_speech_family_through_the_encoder(tmp_path, clips, family):
    """Loads, pools the valid frames (checked against the model called by hand on the clip
    alone), ``layers: all`` ends with ``last``, and batching = one at a time."""
    folder = build_family(tmp_path / family, family)
    encoder = make(folder, max_batch=8, store_frames=True)
    assert (encoder.layout is not None) == (family == "wav2vec2-bert")
    assert encoder.padding_sensitive == (family in ("hubert", "data2vec-audio"))
    rows = clips[:4]
    single = alone(encoder, rows)
    for row in rows[:2]:
        prepared = encoder.prepare(row)
        if encoder.layout is None:
            kwargs = {"input_values": torch.from_numpy(prepared.samples)[None]}
            n = prepared.frames[0]
        else:  # what the extractor returns for the clip alone, its own padding frame and mask included
            from transformers import AutoFeatureExtractor

            fe = AutoFeatureExtractor.from_pretrained(folder)(load_audio(row["audio"], SR), sampling_rate=SR,
                                                              return_tensors="pt", return_attention_mask=True)
            kwargs = {"input_features": fe.input_features, "attention_mask": fe.attention_mask}
            n = int(fe.attention_mask.sum())
            assert prepared.frames == [n] and prepared.feature_frames == [n]
        with torch.inference_mode():
            hidden = encoder._model(**kwargs).last_hidden_state[0]
        assert hidden.shape[0] >= n and (encoder.layout is not None or hidden.shape[0] == n)
        np.testing.assert_allclose(single[row["id"]]["pooled"], hidden[:n].mean(0).numpy(), atol=1e-5)
    out, batches = through_batches(encoder, rows)
    if encoder.padding_sensitive:
        assert all(len(b) == 1 for b in batches)  # four different lengths: never padded together
    else:
        assert max(len(b) for b in batches) == len(rows)  # four lengths padded in one batch
    for row in rows:
        np.testing.assert_allclose(out[row["id"]]["pooled"], single[row["id"]]["pooled"], atol=1e-5)
    every = make(folder, layers="all")
    assert every.outputs()[0].shape == (3, 32)
    np.testing.assert_allclose(every.encode([every.prepare(rows[1])])[0]["pooled"][-1], single[rows[1]["id"]]["pooled"],
                               atol=1e-5)


def test_data2vec_audio_padding_leaks_through_its_positional_convolutions(tmp_path, clips):
    """Why data2vec-audio batches equal lengths only although it reads an attention mask."""
    encoder = make(build_family(tmp_path / "d2v", "data2vec-audio"))
    short, long_ = encoder.prepare(clips[0]), encoder.prepare(clips[3])
    values = torch.zeros(2, len(long_.samples))
    values[0, : len(short.samples)] = torch.from_numpy(short.samples)
    values[1] = torch.from_numpy(long_.samples)
    mask = torch.zeros(2, len(long_.samples), dtype=torch.long)
    mask[0, : len(short.samples)] = 1
    mask[1] = 1
    with torch.inference_mode():
        padded = encoder._model(input_values=values, attention_mask=mask).last_hidden_state[0, : short.frames[0]]
    alone_ = encoder.encode([short])[0]["pooled"]
    assert np.abs(padded.mean(0).numpy() - alone_).max() > 1e-3
    assert encoder.padding_sensitive and encoder.batch_policy().equal_cost_only
