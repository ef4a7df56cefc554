"""Noise models: Poisson-Gaussian estimation from the noisy data and likelihoods."""
