"""Test-only helpers for the trainer tests (``tests/test_train_*.py``): an encoder that
reads features written into the manifest (``encoder: train_testkit.synth``), so that tests
build REAL caches through ``mer extract`` with feature values they control, and a builder
of small synthetic corpora with separable classes. Not part of the installed package."""
