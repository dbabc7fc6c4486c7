"""Environment checks: what ``mer doctor`` prints, and the torchaudio guard for speech models.

Why a torchaudio check: transformers imports torchaudio for its speech models whenever
it is installed. A torchaudio built for another torch version fails to load (undefined
symbols, sometimes a crash) deep inside ``from_pretrained`` with a message that never
mentions torchaudio. `mer` never uses torchaudio (soundfile + soxr decode and
resample), so the fix is to remove it or install the build that matches torch. The
import is tried in a subprocess: a broken native extension may abort the interpreter,
and a half-imported module must not stay in this process.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def check_torchaudio() -> str | None:
    """A problem message when torchaudio is installed but cannot be imported, else None."""
    if importlib.util.find_spec("torchaudio") is None:
        return None
    proc = subprocess.run([sys.executable, "-c", "import torchaudio"], capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout or f"exit status {proc.returncode}").strip().splitlines()
    detail = lines[-1] if lines else f"exit status {proc.returncode}"
    return (f"torchaudio {_version('torchaudio') or '?'} is installed but cannot load with torch "
            f"{_version('torch') or '?'} ({detail}). transformers imports torchaudio for speech models, so "
            "hf-audio encoders fail. mer does not need torchaudio (it decodes with soundfile and resamples "
            "with soxr). Fix: `pip uninstall torchaudio`, or install the torchaudio build that matches your torch.")


def _devices() -> list[str]:
    import torch

    blas = "MKL" if torch.backends.mkl.is_available() else "not MKL: bitwise identity across thread counts not promised"
    lines = [f"cpu: {torch.get_num_threads()} torch threads, BLAS {blas}, MKL_CBWR={os.environ.get('MKL_CBWR', '')}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i}: {props.name}, {props.total_memory / 2**30:.1f} GiB, "
                         f"compute capability {props.major}.{props.minor}, bf16 {torch.cuda.is_bf16_supported()}")
    else:
        lines.append(f"cuda: not available (torch built with CUDA {torch.version.cuda or 'none'})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("mps: available")
    return lines


def doctor_report() -> str:
    """Versions, devices and known problems, as printed by ``mer doctor``."""
    lines = [f"python {platform.python_version()} ({sys.executable}) on {platform.platform()}"]
    packages = ["mer", "torch", "transformers", "tokenizers", "h5py", "dask", "distributed", "numpy", "pandas",
                "soundfile", "soxr", "scikit-learn", "neurokit2", "opensmile", "torchaudio"]
    lines.append("packages:")
    for name in packages:
        lines.append(f"  {name:<13} {_version(name) or 'not installed'}")
    problems: list[str] = []
    try:
        import soundfile

        lines.append(f"  libsndfile    {soundfile.__libsndfile_version__}")
    except (ImportError, OSError) as exc:
        problems.append(f"soundfile cannot load libsndfile: {exc}")
    try:
        lines.append("devices:")
        lines.extend("  " + line for line in _devices())
    except ImportError as exc:
        problems.append(f"torch cannot be imported: {exc}")
    torchaudio = check_torchaudio()
    if torchaudio:
        problems.append(torchaudio)
    if _version("opensmile") is None:
        lines.append("note: opensmile is not installed; the egemaps encoder needs it: pip install 'mer[opensmile]'")
    lines.append("problems:" if problems else "problems: none")
    lines.extend(f"  - {p}" for p in problems)
    return "\n".join(lines)
