"""``mer finetune``: tiny random BERT / Wav2Vec2 saved with save_pretrained, trained on CPU.

What is checked: the split forward (frozen bottom + trainable top) equals the library's
forward; exactly the top-k layers (+ final norm) and the head get gradients and change;
the loss falls on a learnable keyword task; the soft macro-F1 loss against a plain loop; a
run interrupted after a checkpoint resumes to a bitwise-identical final state; the saved
encoder re-loads, extracts what the fine-tuned model pooled, and gets a new cache key;
``mer finetune`` and ``mer evaluate`` from the CLI; the warm-start checks.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from mer.features.registry import build_encoder
from mer.config import load_config
from mer.train.errors import DataError
from mer.finetune import finetune_experiment as finetune
from mer.train.finetune import Interrupted, build_finetune_model, head_kwargs_for, read_warm_start
from mer.train.finetune_data import Feeder, batch_policy, hf_parts, load_finetune_data
from mer.train.finetune_model import SpeechGroup, make_split
from mer.train.losses.soft_f1 import soft_macro_f1_loss

from kit.models import build_bert as kit_build_bert

CPU = torch.device("cpu")
SR = 16000
CLASSES = ("angry", "happy", "sad")
FILLER = "the a cat dog sat on mat day night very so my your we they".split()


# --------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("one_thread_module")


def build_bert(folder: Path, seed: int = 0) -> Path:
    """Tiny BERT (3 layers, 32-d) with a real WordPiece vocabulary."""
    folder = kit_build_bert(folder, FILLER + list(CLASSES), layers=3, seed=seed, punctuation=())
    from transformers import BertTokenizer

    assert BertTokenizer.from_pretrained(folder).tokenize("the cat angry") == ["the", "cat", "angry"]
    return folder


def build_wav2vec2(folder: Path, stable: bool, seed: int = 0) -> Path:
    """Tiny Wav2Vec2: stable-layer-norm (layer-norm conv, attention mask) or post-LN (group norm, no mask)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37,
                            conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm="layer" if stable else "group", do_stable_layer_norm=stable)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True, return_attention_mask=stable).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("bert") / "model")


@pytest.fixture(scope="module")
def w2v_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("w2v")
    return {"stable": build_wav2vec2(root / "stable", True), "postln": build_wav2vec2(root / "postln", False)}


def keyword_manifest(folder: Path, n: int = 48, seed: int = 0) -> Path:
    """Texts whose class is the keyword they contain; one row without text (kept as 'missing')."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = CLASSES[i % 3]
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 9))]
        words.insert(rng.randint(0, len(words)), label)
        split = "train" if i < n * 0.6 else ("val" if i < n * 0.8 else "test")
        rows.append({"id": f"u{i:03d}", "label": label, "group": f"{split}-g{i % 2}", "split": split, "text": " ".join(words)})
    rows.append({"id": "u999", "label": "happy", "group": "train-g0", "split": "train", "text": ""})
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def audio_manifest(folder: Path, n: int = 12) -> Path:
    """Tones whose pitch band is the class; lengths vary so that batches pad."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = CLASSES[i % 3]
        seconds = 0.25 + 0.05 * (i % 4)
        t = np.arange(int(seconds * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * (i % 3)) * t) + 0.01 * rng.standard_normal(len(t))
        path = folder / f"a{i:02d}.wav"
        sf.write(path, wave.astype(np.float32), SR)
        split = "train" if i < 6 else ("val" if i < 9 else "test")
        rows.append({"id": f"a{i:02d}", "label": label, "group": f"{split}-g{i % 3}", "split": split, "audio": path.name})
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def text_config(tmp: Path, bert: Path, *sets: str):
    manifest = keyword_manifest(tmp)
    yaml = f"""
dataset: {{name: generic, manifest: {manifest}}}
cache: {{root: {tmp / 'cache'}}}
features:
  text: {{encoder: hf-text, model: {bert}, max_length: 24}}
train: {{hidden: 16, dropout: 0.1}}
finetune: {{epochs: 2, batch_size: 8, max_tokens: 96, lr_encoder: 1.0e-3, lr_head: 1.0e-2, warmup: 0.0,
           checkpoint_every: 2, io_threads: 1, device: cpu, patience: 5}}
output: {tmp / 'runs'}
"""
    path = tmp / "config.yaml"
    path.write_text(yaml, encoding="utf-8")
    return load_config(path, list(sets)), path


def quiet(_line: str) -> None:
    pass


def setup_model(config, modality: str = "text"):
    """Encoder + FinetuneModel + Feeder + data for one config (what finetune() builds)."""
    from mer.pipeline.corpus import prepare_manifest

    result, _ = prepare_manifest(config)
    encoder = build_encoder(config.features[modality])
    encoder.load(CPU)
    data = load_finetune_data(config.train, result.manifest, encoder)
    hf_model, _ = hf_parts(encoder)
    kwargs = head_kwargs_for(config.train, modality, config.features[modality].encoder, hf_model.config.hidden_size,
                             data.num_classes)
    model = build_finetune_model(encoder, modality, config.finetune, kwargs)
    feeder = Feeder(encoder, data, CPU, io_threads=0)
    sr = encoder.sampling_rate if encoder.family == "hf-audio" else None
    return encoder, model, feeder, data, batch_policy(encoder, config.finetune, sr)


# --------------------------------------------------------------------------- the split forward


def test_split_forward_equals_library_forward(bert_dir, w2v_dirs):
    from transformers import AutoModel, AutoTokenizer

    texts = ["the cat sat on the mat happy", "sad", "my dog was very angry on a day and a night"]
    model = AutoModel.from_pretrained(bert_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    for k in (0, 1, 3):
        split = make_split(model, k)
        inputs = split.collate(texts, tokenizer, 32, CPU)
        assert int(inputs["attention_mask"].sum(1).min()) < inputs["attention_mask"].shape[1]  # really padded
        with torch.no_grad():
            h, mask = split.bottom(inputs)
            ours = split.top(h, mask)
            ref = model(**inputs).last_hidden_state
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)

    values = torch.randn(3, 4000)
    sample_mask = torch.ones(3, 4000, dtype=torch.long)
    sample_mask[1, 3000:] = 0
    sample_mask[2, 2200:] = 0
    values = values * sample_mask
    for variant, folder in w2v_dirs.items():
        model = AutoModel.from_pretrained(folder).eval()
        use_mask = variant == "stable"
        for k in (0, 2, 3):
            split = make_split(model, k)
            group = SpeechGroup(values, sample_mask if use_mask else None, torch.ones(3, dtype=torch.long), torch.arange(3))
            with torch.no_grad():
                h, mask = split.bottom(group)
                ours = split.top(h, mask)
                ref = model(values, attention_mask=sample_mask if use_mask else None).last_hidden_state
            if use_mask:  # compare the valid frames (padded frames are not defined by the library either)
                valid = model._get_feature_vector_attention_mask(ours.shape[1], sample_mask).bool()
                ours, ref = ours[valid], ref[valid]
            torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_unsupported_depth_is_a_clear_error(bert_dir):
    from transformers import AutoModel

    with pytest.raises(ValueError, match="unfreeze_top=5 but BertModel has 3 layers"):
        make_split(AutoModel.from_pretrained(bert_dir), 5)


# --------------------------------------------------------------------------- what trains


def _grad_check(model, feeder, data, expected_prefixes: tuple[str, ...], batch_rows: np.ndarray, steps: int = 3):
    """After backward: grads exactly on expected params; after steps: only those change."""
    before = {n: p.detach().clone() for n, p in model.encoder.named_parameters()}
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable == {n for n in before if n.startswith(expected_prefixes)}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train(True)
    for step in range(steps):
        (_, prepared), = list(feeder.iterate([batch_rows]))
        assert any(p is None for p in prepared) and any(p is not None for p in prepared)
        pooled, present = feeder.pooled(model, prepared)
        logits = model.classify(pooled, present)
        loss = torch.nn.functional.cross_entropy(logits, data.targets(batch_rows, CPU))
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for n, p in model.encoder.named_parameters():
                if n in trainable:
                    assert p.grad is not None, n
                    # softmax(qk + q·b_k) = softmax(qk): the key bias gets a zero gradient by design
                    if not n.endswith(("key.bias", "k_proj.bias")):
                        assert p.grad.abs().sum() > 0, n
                else:
                    assert p.grad is None and not p.requires_grad, n
            for n, p in model.head.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, f"head.{n}"
        optimizer.step()
    for n, p in model.encoder.named_parameters():
        if n in trainable:
            assert not torch.equal(p, before[n]) or n.endswith(("key.bias", "k_proj.bias")), n
        else:
            assert torch.equal(p, before[n]), n


def test_only_top_layers_and_head_get_gradients_text(tmp_path, bert_dir):
    config, _ = text_config(tmp_path, bert_dir, "finetune.unfreeze_top=2")
    _, model, feeder, data, _ = setup_model(config)
    missing = data.ids.index("u999")
    rows = np.array([0, 1, 2, 3, missing])
    _grad_check(model, feeder, data, ("encoder.layer.1.", "encoder.layer.2."), rows)
    assert not model.encoder.pooler.dense.weight.requires_grad  # not on hf-text's path: stays frozen


def test_only_top_layers_final_norm_and_head_get_gradients_speech(tmp_path, w2v_dirs):
    (tmp_path / "audio").mkdir()
    manifest = audio_manifest(tmp_path / "audio")
    config_path = tmp_path / "audio.yaml"
    config_path.write_text(f"""
dataset: {{name: generic, manifest: {manifest}}}
cache: {{root: {tmp_path / 'cache'}}}
features:
  audio: {{encoder: hf-audio, model: {w2v_dirs['stable']}, max_seconds: 0.2}}
train: {{hidden: 16}}
finetune: {{unfreeze_top: 1, batch_size: 4, device: cpu}}
""", encoding="utf-8")
    config = load_config(config_path)
    _, model, feeder, data, _ = setup_model(config, "audio")
    assert set(model.split.trainable_modules()) == {"encoder.layers.2", "encoder.layer_norm"}
    # a clip longer than max_seconds is encoded in windows whose frames pool together
    (_, prepared), = list(feeder.iterate([np.array([3])]))
    assert len(prepared[0].bounds) == 2
    # "missing": a row whose audio cannot be decoded is recorded and enters the head as absent
    data.records[5] = dict(data.records[5], audio=str(tmp_path / "nope.wav"))
    _grad_check(model, feeder, data, ("encoder.layers.2.", "encoder.layer_norm."), np.array([0, 1, 3, 5]))
    assert "a05" in feeder.failures and feeder.failures["a05"].startswith("read:")


# --------------------------------------------------------------------------- soft macro-F1


def soft_f1_reference(probs: list[list[float]], labels: list[int], eps: float = 1e-8) -> float:
    """Straight from the definition, one class and one sample at a time."""
    f1s = []
    for c in range(len(probs[0])):
        if not any(y == c for y in labels):
            continue
        tp = sum(p[c] for p, y in zip(probs, labels) if y == c)
        fp = sum(p[c] for p, y in zip(probs, labels) if y != c)
        fn = sum(1 - p[c] for p, y in zip(probs, labels) if y == c)
        f1s.append(2 * tp / (2 * tp + fp + fn + eps))
    return 1 - sum(f1s) / len(f1s)


@pytest.mark.parametrize("labels", [[0, 1, 2, 2, 1, 0, 0], [0, 0, 2, 2], [1]])
def test_soft_f1_matches_plain_loop(labels):
    torch.manual_seed(1)
    logits = torch.randn(len(labels), 4, dtype=torch.float64, requires_grad=True)
    probs = torch.softmax(logits, dim=1)
    loss = soft_macro_f1_loss(probs, torch.tensor(labels))
    assert math.isclose(loss.item() if not loss.requires_grad else float(loss.detach()), soft_f1_reference(probs.tolist(), labels), abs_tol=1e-12)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_soft_f1_zero_for_perfect_predictions_and_finite_gradients():
    labels = torch.tensor([0, 2, 2, 1, 0])
    onehot = torch.nn.functional.one_hot(labels, 4).double().requires_grad_(True)  # class 3 absent
    loss = soft_macro_f1_loss(onehot, labels)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-8)
    loss.backward()
    assert torch.isfinite(onehot.grad).all()
    # all-wrong predictions: F1 = 0 for every class, loss 1
    wrong = torch.nn.functional.one_hot((labels + 1) % 4, 4).double()
    assert float(soft_macro_f1_loss(wrong, labels)) == pytest.approx(1.0, abs=1e-8)
    # multi-hot targets (multi-label) use the same formula
    targets = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 0, 0]])
    probs = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.3, 0.8], [0.7, 0.1, 0.4]], dtype=torch.float64)
    f1 = [2 * 1.6 / (2 * 1.6 + 0.1 + 0.4), 2 * 1.4 / (2 * 1.4 + 0.4 + 0.6)]  # classes 0 and 2; class 1 has no positive
    assert float(soft_macro_f1_loss(probs, targets)) == pytest.approx(1 - sum(f1) / 2, abs=1e-8)


# --------------------------------------------------------------------------- training, resume, outputs


def test_loss_decreases_on_keyword_task(tmp_path, bert_dir):
    for loss in ("weighted_ce", "soft_f1"):
        config, _ = text_config(tmp_path, bert_dir, f"finetune.loss={loss}", "finetune.epochs=4",
                                "finetune.checkpoint_every=0", "finetune.lr_encoder=3e-3", "finetune.lr_head=3e-2",
                                "finetune.schedule=none")
        result = finetune(config, tmp_path / f"run-{loss}", progress=False, log=quiet)
        losses = [row["loss"] for row in result.history]
        assert losses[-1] < 0.6 * losses[0], (loss, losses)
        assert f"loss_{'ce' if loss == 'weighted_ce' else 'soft_f1'}" in result.history[0]
        assert result.metrics["train"]["accuracy"] > 0.8  # chance is 1/3
        assert not (result.run_dir / "checkpoint.pt").exists()  # a finished run keeps no checkpoint


def _final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = {f"encoder.{k}": v for k, v in load_file(run_dir / "encoder" / "model.safetensors").items()}
    ckpt = torch.load(run_dir / "model.pt", weights_only=True)
    state.update({f"head.{k}": v for k, v in ckpt["state_dict"].items()})
    state.update({f"stats.{k}": v for k, v in ckpt["stats"]["text"].items()})
    return state


def test_interrupted_run_resumes_to_the_same_state(tmp_path, bert_dir):
    # 30 train rows in batches of 4 → 8 batches; grad_accum 3 → 3 optimizer steps per epoch, the
    # last one over a partial group; checkpoints at steps 2, 4, 8 (mid-epoch) and after every
    # epoch; dropout 0.1 in BERT and the head, so the dropout RNG must come back too
    sets = ("finetune.epochs=3", "finetune.grad_accum=3", "finetune.checkpoint_every=2", "finetune.batch_size=4")
    config, _ = text_config(tmp_path, bert_dir, *sets)
    straight = finetune(config, tmp_path / "straight", progress=False, log=quiet)

    def kill_at(step_to_die: int):
        def hook(step: int) -> None:
            if step == step_to_die:
                raise Interrupted(f"killed after step {step}")
        return hook

    run = tmp_path / "resumed"
    with pytest.raises(Interrupted):  # the last step of epoch 1: resumes mid-epoch, from step 2
        finetune(config, run, progress=False, log=quiet, on_step=kill_at(3))
    assert (run / "checkpoint.pt").is_file() and not (run / "model.pt").exists()
    with pytest.raises(Interrupted):  # step 1 of epoch 3: resumes from the end of epoch 2 (step 6)
        resumed = finetune(config, run, progress=False, log=quiet, on_step=kill_at(7))
    resumed = finetune(config, run, progress=False, log=quiet)
    assert resumed.resumed_from_step == 6

    a, b = _final_state(tmp_path / "straight"), _final_state(run)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.history == resumed.history and len(resumed.history) == 3
    assert json.loads((run / "metrics.json").read_text())["test"] == straight.metrics["test"]
    # and the same command on a finished run does nothing
    again = finetune(config, run, progress=False, log=quiet)
    assert again.already_complete


def test_saved_encoder_reloads_extracts_the_tuned_features_and_gets_a_new_key(tmp_path, bert_dir):
    from transformers import AutoModel

    config, _ = text_config(tmp_path, bert_dir, "finetune.checkpoint_every=0", "finetune.epochs=1")
    result = finetune(config, tmp_path / "run", progress=False, log=quiet)
    reloaded = AutoModel.from_pretrained(result.encoder_dir)
    original = AutoModel.from_pretrained(bert_dir)
    changed = [n for n, p in reloaded.named_parameters() if not torch.equal(p, dict(original.named_parameters())[n])]
    assert changed and all(n.startswith(("encoder.layer.1.", "encoder.layer.2.")) for n in changed)

    base = build_encoder(config.features["text"])
    tuned_options = type(config.features["text"])(**{**config.features["text"].__dict__, "model": str(result.encoder_dir)})
    tuned = build_encoder(tuned_options)
    assert tuned.key() != base.key()
    assert tuned.identity()["files_sha256"]["model.safetensors"] != base.identity()["files_sha256"]["model.safetensors"]
    assert result.metrics["run"]["cache_keys"]["text"] == tuned.key()

    # what `mer extract` computes from the folder = what the fine-tuned model pooled in training
    tuned.load(CPU)
    texts = ["the cat sat happy", "very very sad day my dog", "angry"]
    extracted = np.stack([o["pooled"] for o in tuned.encode(texts)])
    config2, _ = text_config(tmp_path, result.encoder_dir, "finetune.unfreeze_top=2")
    _, model, feeder, _, _ = setup_model(config2)
    with torch.no_grad():
        inputs = model.split.collate(texts, feeder.pre, feeder.encoder._max_length, CPU)
        pooled = model.encode_text(inputs).numpy()
    np.testing.assert_allclose(extracted, pooled, rtol=0, atol=1e-5)


def test_cli_finetune_and_evaluate(tmp_path, bert_dir):
    from mer.cli import cli

    _, config_path = text_config(tmp_path, bert_dir)
    run = tmp_path / "cli-run"
    runner = CliRunner()
    out = runner.invoke(cli, ["finetune", "-c", str(config_path), "--modality", "text", "--run-dir", str(run),
                              "--set", "finetune.epochs=1", "--quiet"])
    assert out.exit_code == 0, out.output
    assert f"--set features.text.model={run / 'encoder'} --modality text" in out.output
    for name in ("config.yaml", "metrics.json", "predictions.csv", "history.csv", "confusion.png", "curves.png",
                 "model.pt", "log.txt", "encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer_config.json"):
        assert (run / name).is_file(), name
    predictions = list(csv.DictReader((run / "predictions.csv").open()))
    assert len(predictions) == 49 and {r["missing"] for r in predictions if r["id"] == "u999"} == {"text"}
    ev = runner.invoke(cli, ["evaluate", str(run), "--split", "test", "--json"])
    assert ev.exit_code == 0, ev.output
    assert json.loads(ev.stdout) == json.loads((run / "metrics.json").read_text())["test"]
    card = json.loads((run / "metrics.json").read_text())["protocol"]  # fine-tuning runs carry the card too
    assert card["adapter"] == "generic" and card["groups"]["test"] == ["test-g0", "test-g1"]
    assert "protocol: generic the manifest's split column" in (run / "log.txt").read_text()
    printed = runner.invoke(cli, ["evaluate", str(run), "--split", "test"])
    assert printed.exit_code == 0 and "test: 2 group(s) [test-g0, test-g1]" in printed.output, printed.output
    bad = runner.invoke(cli, ["finetune", "-c", str(config_path), "--modality", "nope", "--run-dir", str(run)])
    assert bad.exit_code == 2 and "finetune.modality 'nope' is not a key of 'features'" in bad.output


def test_warm_start_checks_the_head(tmp_path, bert_dir):
    from mer.train.models.unimodal import Unimodal

    config, _ = text_config(tmp_path, bert_dir)
    base_key = build_encoder(config.features["text"]).key()
    kwargs = head_kwargs_for(config.train, "text", config.features["text"].encoder, 32, 3)
    head = Unimodal(**kwargs)
    stats = {"mean": torch.randn(32), "std": torch.rand(32) + 0.5}

    def write(run: Path, **change) -> Path:
        ckpt = {"model": "unimodal", "modalities": ["text"], "cache_keys": {"text": base_key}, "init_kwargs": kwargs,
                "state_dict": head.state_dict(), "classes": list(CLASSES), "multilabel": False,
                "stats": {"text": stats}}
        ckpt.update(change)
        run.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, run / "model.pt")
        return run

    state, got = read_warm_start(write(tmp_path / "ok"), "text", base_key, kwargs, list(CLASSES), False)
    assert torch.equal(got["mean"], stats["mean"]) and state.keys() == head.state_dict().keys()
    with pytest.raises(DataError, match="classes"):
        read_warm_start(write(tmp_path / "cls", classes=["a", "b", "c"]), "text", base_key, kwargs, list(CLASSES), False)
    with pytest.raises(DataError, match="encoder key"):
        read_warm_start(write(tmp_path / "key", cache_keys={"text": "hf-text-000"}), "text", base_key, kwargs,
                        list(CLASSES), False)
    with pytest.raises(DataError, match="hidden size 64"):
        read_warm_start(write(tmp_path / "hid", init_kwargs={**kwargs, "hidden": 64}), "text", base_key, kwargs,
                        list(CLASSES), False)
    with pytest.raises(DataError, match="model.pt not found"):
        read_warm_start(tmp_path / "none", "text", base_key, kwargs, list(CLASSES), False)

    # a run starts from that head and keeps its statistics
    config, _ = text_config(tmp_path, bert_dir, f"finetune.warm_start={tmp_path / 'ok'}", "finetune.epochs=1",
                            "finetune.checkpoint_every=0")
    result = finetune(config, tmp_path / "warm", progress=False, log=quiet)
    saved = torch.load(result.run_dir / "model.pt", weights_only=True)
    assert torch.equal(saved["stats"]["text"]["mean"], stats["mean"])
    assert "warm start" in (result.run_dir / "log.txt").read_text()


def test_speech_finetune_end_to_end_and_gradient_checkpointing(tmp_path, w2v_dirs):
    from safetensors.torch import load_file

    from mer.train.evaluate import evaluate_run
    from mer.train.finetune_model import enable_gradient_checkpointing

    (tmp_path / "audio").mkdir()
    manifest = audio_manifest(tmp_path / "audio")
    config_path = tmp_path / "audio.yaml"
    config_path.write_text(f"""
dataset: {{name: generic, manifest: {manifest}}}
cache: {{root: {tmp_path / 'cache'}}}
features:
  audio: {{encoder: hf-audio, model: {w2v_dirs['stable']}, max_seconds: 0.3}}
train: {{hidden: 16, dropout: 0.1}}
finetune: {{unfreeze_top: 2, batch_size: 4, max_seconds: 1.2, epochs: 2, device: cpu, checkpoint_every: 0,
           lr_encoder: 1.0e-3, io_threads: 1}}
""", encoding="utf-8")
    runs = {}
    for gc in ("false", "true"):
        config = load_config(config_path, [f"finetune.gradient_checkpointing={gc}"])
        runs[gc] = finetune(config, tmp_path / f"gc-{gc}", progress=False, log=quiet)
    plain, ckpt = (load_file(runs[k].encoder_dir / "model.safetensors") for k in ("false", "true"))
    assert all(torch.equal(plain[k], ckpt[k]) for k in plain)  # recomputation replays dropout exactly
    assert runs["true"].metrics["run"]["trainable_modules"] == ["encoder.layers.1", "encoder.layers.2",
                                                                 "encoder.layer_norm"]
    assert evaluate_run(runs["true"].run_dir, "test") == runs["true"].metrics["test"]

    _, model, _, _, _ = setup_model(load_config(config_path), "audio")
    enable_gradient_checkpointing(model.encoder)
    assert all(layer.gradient_checkpointing for layer in model.split.upper)

    # post-LN Wav2Vec2 (group-norm conv, no attention mask): equal-length batches only
    config = load_config(config_path, [f"features.audio.model={w2v_dirs['postln']}", "finetune.epochs=1"])
    result = finetune(config, tmp_path / "postln", progress=False, log=quiet)
    assert result.metrics["run"]["trainable_modules"] == ["encoder.layers.1", "encoder.layers.2"]
    assert evaluate_run(result.run_dir, "val") == result.metrics["val"]


def test_lmr_cl_recipe_config_parses_with_its_documented_commands():
    import re
    import shlex

    from mer.cli.options import packaged_config
    from mer.finetune import pick_modality

    path = packaged_config("kemdy20-lmr-cl")
    config = load_config(path)
    assert config.features["text"].model == "monologg/koelectra-base-v3-discriminator"
    assert config.features["audio"].model == "kresnik/wav2vec2-large-xlsr-korean"
    assert (config.finetune.unfreeze_top, config.finetune.loss, config.train.model) == (2, "weighted_ce", "lmr")
    with pytest.raises(DataError, match="say which modality"):  # two hf encoders: the command must choose
        pick_modality(config)
    # every command in the header comment is a valid invocation of this config
    header = "\n".join(line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#"))
    commands = re.findall(r"\d\. (mer .*?)(?=\n\s*\d\. |\n\s*\n|\Z)", header.replace("\\\n", " "), flags=re.S)
    assert [c.split()[1] for c in commands] == ["finetune", "finetune", "extract", "train"]
    for command in commands:
        args = shlex.split(command)
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        parsed = load_config(path, sets)
        if "--modality" in args:
            assert pick_modality(parsed, args[args.index("--modality") + 1]) in ("text", "audio")
        if "soft_f1" in command:
            assert parsed.finetune.loss == "soft_f1" and parsed.finetune.unfreeze_top == 12
