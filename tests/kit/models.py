"""Tiny random Hugging Face models, saved with ``save_pretrained`` and loaded through the same
``from_pretrained(path)`` code path as a real checkpoint (no model hub is needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"

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


def build_bert(folder: Path, words: Sequence[str] = (), layers: int = 2, seed: int = 0,
               punctuation: Sequence[str] = (".", ",", "!", "?")) -> Path:
    """A tiny BERT (32-d) whose WordPiece vocabulary holds ``punctuation``, ``words`` and single letters."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *punctuation] + list(words) + list(LETTERS)
             + ["##" + c for c in LETTERS])
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5: BertTokenizer(vocab=...) builds the real WordPiece vocabulary (vocab_file= is ignored)
    tokenizer = BertTokenizer(vocab=str(folder / "vocab.txt"))
    if words:
        assert tokenizer.convert_tokens_to_ids(words[0]) != tokenizer.unk_token_id
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
