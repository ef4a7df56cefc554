"""denoise: self-supervised denoising of large fluorescence-microscopy data."""

import os

# torch's OpenMP threads spin while waiting by default; on a shared or busy machine that makes
# 2-thread training several times slower than 1 thread. Passive waiting must be set before
# torch is first imported, which every entry point does after importing this package.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
