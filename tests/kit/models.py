"""Tiny random Hugging Face models, saved with ``save_pretrained`` and loaded through the same
``from_pretrained(path)`` code path as a real checkpoint (no model hub is needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"


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
