"""Reading and writing images: axes handling, lazy readers, OME-Zarr stores."""
