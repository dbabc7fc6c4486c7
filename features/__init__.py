"""Encoders: each family turns one manifest column into arrays (see :mod:`mer.features.base`).

Importing this package asks Intel MKL (the BLAS of the x86 PyTorch wheels) for its strict
conditional-numerical-reproducibility mode, ``MKL_CBWR=AUTO,STRICT``, unless the variable is
already set: matrix products then give the same bits whatever the number of threads, so a cache
extracted by one process with 2 torch threads and by Dask workers with 1 thread each holds the
same bytes. MKL reads the variable at its first call, so it is set here, before any encoder runs
(a process that multiplied matrices before importing ``mer`` keeps its mode; ``mer doctor``
reports the variable). Machines with different instruction sets (AVX2 vs AVX-512) still take
different code paths; CUDA and non-MKL builds are not covered by it.
"""

import os

#: the MKL reproducibility mode ``mer`` asks for (see the module docstring)
MKL_CBWR = "AUTO,STRICT"

os.environ.setdefault("MKL_CBWR", MKL_CBWR)
