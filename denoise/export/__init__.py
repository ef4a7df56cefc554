"""Export trained models to exchange formats (BioImage Model Zoo packages)."""
