"""Benchmark-only helpers that must be importable by module path (``encoder: benchkit.synth``
in a config needs a dotted module name). Not part of the installed package; the bench
scripts put ``bench/`` on ``sys.path``."""
