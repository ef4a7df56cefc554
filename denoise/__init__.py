"""denoise: self-supervised denoising of large fluorescence-microscopy data."""

__version__ = "0.1.0"
