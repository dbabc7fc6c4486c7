"""mer: multimodal emotion recognition.

The code lives in three packages, one per stage of the one-way data flow:
``mer.pipeline`` (corpus adapters, manifests, extraction orchestration, CLI),
``mer.features`` (frozen encoders) and ``mer.train`` (heads, losses, trainer,
evaluation).
"""

__version__ = "0.1.0"
