"""Loaders for the ground-truth data sets of ``shared/data`` used by the quality benchmark.

Every loader yields :class:`Item` s: one *training unit* (what a network is trained on: one
image, or a stack of frames of a static scene) with its ground truth and the frames that are
scored.  Pixel values are returned as stored (uint8 or float32); the metrics cast to float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

#: ``shared/data`` beside the repository (``/work/main`` → ``/work/shared/data``).
DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

#: Default order of the sets: the largest (fmd_testset, 12 units) last, so an interrupted run
#: still has every other set.
SETS: tuple[str, ...] = ("fmd_confocal", "bsd68", "timelapse", "fmd_testset")
FMD_PAIRS: tuple[str, ...] = ("fish", "BPAE_B", "BPAE_G", "BPAE_R", "mice")
FMD_CONFIGS: tuple[str, ...] = (
    "Confocal_BPAE_B", "Confocal_BPAE_G", "Confocal_BPAE_R", "Confocal_FISH", "Confocal_MICE",
    "TwoPhoton_BPAE_B", "TwoPhoton_BPAE_G", "TwoPhoton_BPAE_R", "TwoPhoton_MICE",
    "WideField_BPAE_B", "WideField_BPAE_G", "WideField_BPAE_R",
)  # fmt: skip


class Item(NamedTuple):
    """One training unit of a data set.

    Attributes
    ----------
    name
        Unit name (image or configuration).
    noisy
        ``(y, x)`` image or ``(t, y, x)`` stack of frames of one static scene (raw values).
    gt
        ``(y, x)`` ground truth; it applies to every frame of the stack.
    axes
        ``"yx"`` or ``"tyx"``.
    set
        Data-set key (one of :data:`SETS`, or a test's own).
    frames
        Frames of ``noisy`` that are denoised and scored (``(0,)`` for a single image).
    primary
        Metric that ranks methods on this set: ``"psnr"`` (range of GT) or ``"si_psnr"``
        (after a least-squares affine fit, for data whose noisy frames carry an offset).
    """

    name: str
    noisy: np.ndarray
    gt: np.ndarray
    axes: str
    set: str = ""
    frames: tuple[int, ...] = (0,)
    primary: str = "psnr"

    def plane(self, k: int) -> np.ndarray:
        """Frame ``k`` of the unit as a ``(y, x)`` array."""
        return self.noisy if self.noisy.ndim == 2 else self.noisy[k]

    def image_name(self, k: int) -> str:
        """Row label of scored frame ``k``."""
        return self.name if self.noisy.ndim == 2 else f"{self.name}/t{k}"


def _tif(path: Path) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path))


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def fmd_confocal(data: Path = DATA, names: Sequence[str] = FMD_PAIRS) -> Iterator[Item]:
    """The five FMD confocal pairs of Noise2Fast (real noise), one 512×512 uint8 image each."""
    root = data / "fmd_confocal_n2f"
    for n in names:
        yield Item(n, _tif(root / "noisy" / f"{n}.tif"), _tif(root / "gt" / f"{n}.tif"), "yx",
                   "fmd_confocal")  # fmt: skip


def fmd_testset(
    data: Path = DATA, configs: Sequence[str] = FMD_CONFIGS, frames: tuple[int, ...] = (0,)
) -> Iterator[Item]:
    """The FMD test field of view per configuration: 4 raw frames (``tyx``) and the 50-frame mean.

    Networks train on all four frames; ``frames`` are scored (default: frame 1 only).
    """
    root = data / "fmd_testset_fm2s"
    for c in configs:
        stack = np.stack([_png(root / "raw" / f"{c}_{k}.png") for k in range(1, 5)])
        yield Item(c, stack, _png(root / "gt" / f"{c}.png"), "tyx", "fmd_testset", frames)


def bsd68(data: Path = DATA, indices: Sequence[int] | None = None) -> Iterator[Item]:
    """BSD68 with the Noise2Fast paper's Gaussian σ = 25 realisation (GT uint8, noisy float32).

    ``indices``: the images to load; None: every image of the shared set (12, ``gt/<i>.tif``).
    """
    root = data / "synthetic" / "bsd68_gaussian25_n2f"
    if indices is None:
        indices = sorted(int(f.stem) for f in (root / "gt").glob("*.tif"))
    for i in indices:
        yield Item(str(i), _tif(root / "noisy" / f"{i}.tif"), _tif(root / "gt" / f"{i}.tif"), "yx",
                   "bsd68")  # fmt: skip


def timelapse(data: Path = DATA, frames: tuple[int, ...] = (0, 5, 9)) -> Iterator[Item]:
    """The simulated SRDTrans time-lapse: 10 noisy 490×490 frames of a static scene, one GT.

    The noisy frames carry a background offset relative to GT, so methods are ranked by the
    affine-fitted PSNR (``si_psnr``), as ``shared/data/README.md`` advises.
    """
    root = data / "synthetic" / "srdtrans_sim_timelapse_fm2s"
    stack = np.stack([_png(root / "noisy" / f"{k}.png") for k in range(10)])
    yield Item("srdtrans", stack, _png(root / "gt.png"), "tyx", "timelapse", frames, "si_psnr")


LOADERS = {"fmd_confocal": fmd_confocal, "fmd_testset": fmd_testset, "bsd68": bsd68,
           "timelapse": timelapse}  # fmt: skip


def load(set_name: str, data: Path = DATA, quick: bool = False) -> list[Item]:
    """Items of one set; ``quick`` keeps one unit (and one scored frame) per set."""
    if set_name not in LOADERS:
        raise ValueError(f"unknown set '{set_name}'; choose from {', '.join(SETS)}")
    if not data.is_dir():
        raise FileNotFoundError(f"shared data not found at {data} (see shared/data/README.md)")
    items = list(LOADERS[set_name](data))
    if quick:
        items = [items[0]._replace(frames=items[0].frames[:1])]
    return items


def crop(item: Item, size: int, y0: int | None = None, x0: int | None = None) -> Item:
    """A ``size × size`` crop of an item (centre by default), e.g. for a smoke test."""
    ny, nx = item.gt.shape
    y0 = (ny - size) // 2 if y0 is None else y0
    x0 = (nx - size) // 2 if x0 is None else x0
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    noisy = item.noisy[sl] if item.noisy.ndim == 2 else item.noisy[(slice(None), *sl)]
    return item._replace(noisy=np.ascontiguousarray(noisy), gt=np.ascontiguousarray(item.gt[sl]))
