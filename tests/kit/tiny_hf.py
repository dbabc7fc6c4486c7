"""Tiny random Hugging Face models saved with ``save_pretrained``, for tests that load them
through the encoders' real ``from_pretrained`` path (the hub is never reached)."""

from __future__ import annotations

from pathlib import Path

import torch

SAMPLING_RATE = 16000


def tiny_wav2vec2(folder: Path, norm: str = "layer", seed: int = 0) -> Path:
    """A 2-layer, 32-wide Wav2Vec2 with a 3-layer conv front end (80x downsampling). ``layer``:
    layer-norm front end with an attention mask (batchable); ``group``: group norm, no mask."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    layer_norm = norm == "layer"
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                            conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
                            feat_extract_norm=norm, do_stable_layer_norm=layer_norm)
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=SAMPLING_RATE, do_normalize=True,
                             return_attention_mask=layer_norm).save_pretrained(folder)
    return folder


def tiny_bert(folder: Path, words: list[str], seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of ``words`` plus single letters."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "?", "!", *dict.fromkeys(words), *letters,
             *("##" + c for c in letters)]
    path = folder / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=64)).save_pretrained(folder)
    BertTokenizer(vocab=str(path)).save_pretrained(folder)
    return folder
