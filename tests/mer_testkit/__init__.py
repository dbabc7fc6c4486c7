"""Test-only helpers for the extraction tests: a deterministic toy encoder (``mer_testkit.toy``,
usable as ``encoder: mer_testkit.toy`` in a config because the registry accepts module
paths) and writers of tiny WAV corpora and configs. Not part of the installed package."""
