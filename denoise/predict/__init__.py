"""Chunked, resumable, scatterable prediction over OME-Zarr stores."""
