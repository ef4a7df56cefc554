"""Synthetic data with a known ground truth (dynamic time-lapses: :mod:`.timelapse`)."""
