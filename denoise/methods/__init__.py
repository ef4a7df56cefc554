"""Training schemes and zero-shot/classical denoisers (N2V, Noise2Fast, Gaussian, BM3D+VST)."""
