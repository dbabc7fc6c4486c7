"""The tests' one helper kit (not part of the installed package).

* :mod:`kit.corpora`: writers of tiny corpora in each real on-disk format (KEMDy20, RAVDESS,
  CMU-MOSEI ``.csd``, MELD, E4 exports, WAV/MP4 files).
* :mod:`kit.toy` / :mod:`kit.toy_corpus`: a deterministic toy encoder (usable as
  ``encoder: kit.toy`` in a config, because the registry accepts module paths) and writers of
  tiny WAV corpora, manifests and configs for the extraction tests.
* :mod:`kit.synth` / :mod:`kit.train_corpus`: an encoder that reads feature values written into
  the manifest (``encoder: kit.synth``), so trainer tests build REAL caches through
  ``mer extract`` with values they control, and a builder of small separable corpora.
* :mod:`kit.models`: tiny random Hugging Face models saved with ``save_pretrained``.

Shared fixtures live in ``tests/conftest.py``.
"""
