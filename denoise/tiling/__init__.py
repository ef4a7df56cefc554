"""Exact blended tiling on the global 2**depth lattice."""
