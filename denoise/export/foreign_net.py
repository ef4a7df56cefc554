"""A foreign package's network as a module a model directory can store: TorchScript bytes.

:class:`ForeignNetwork` keeps the serialised TorchScript program in a ``uint8`` buffer, so
``model.pt`` (:func:`denoise.models.store.save_model`) holds the whole network, its checksum
covers it, and :func:`denoise.models.store.load_model` rebuilds it from ``hparams`` alone.
It takes ``(N, 1, *spatial)`` normalised tiles, reorders them to the package's axes (e.g.
``bcyx``, ``byxc``, ``yx``), runs the program and returns ``(N, 1, *spatial)``.

:func:`script_reach` measures the program's receptive field by impulse response (weights made
positive, biases zero, batch-norm statistics neutral), as
:func:`denoise.models.receptive_field.measure_receptive_field` does for our U-Nets;
:func:`shift_equivariant` checks that shifting the input by a lattice step shifts the output
alike (what exact tiling relies on), and :func:`lattice_step` finds the smallest such step for
a package that states a fixed input size.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn

from denoise.models.receptive_field import impulse_reach

#: Largest tile edge the reach measurement tries before calling the network non-local.
MAX_REACH_TILE = 1024
#: Lattice steps tried when the spec states a fixed input size (every one divides 64).
STEPS = (1, 2, 4, 8, 16, 32, 64)


def to_axes(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """``x`` with axes ``src`` as axes ``dst`` (letters of ``src`` missing in ``dst`` must be 1)."""
    for letter in reversed([a for a in src if a not in dst]):
        x = x.squeeze(src.index(letter))
        src = src.replace(letter, "")
    for letter in dst:
        if letter not in src:
            x = x.unsqueeze(0)
            src = letter + src
    return x.permute(*[src.index(a) for a in dst])


class ForeignNetwork(nn.Module):
    """A TorchScript program stored as bytes (see the module docstring).

    Parameters
    ----------
    ndim
        Spatial dimensions (2: yx, 3: zyx).
    multiple
        Tile sizes and origins must be multiples of this (the spec's size step).
    in_axes, out_axes
        The package's tensor axes, letters from ``bczyx``.
    n_bytes
        Length of the serialised program.
    """

    def __init__(self, ndim: int, multiple: int, in_axes: str, out_axes: str, n_bytes: int) -> None:
        super().__init__()
        self.ndim, self.multiple = int(ndim), int(multiple)
        self.in_axes, self.out_axes = str(in_axes), str(out_axes)
        self.hparams = {
            "ndim": self.ndim,
            "multiple": self.multiple,
            "in_axes": self.in_axes,
            "out_axes": self.out_axes,
            "n_bytes": int(n_bytes),
        }
        self.register_buffer("program", torch.zeros(int(n_bytes), dtype=torch.uint8))
        self._loaded: dict[str, torch.jit.ScriptModule] = {}  # a dict: not a submodule

    @classmethod
    def from_bytes(cls, blob: bytes, ndim: int, multiple: int, in_axes: str, out_axes: str) -> ForeignNetwork:
        """Wrap a serialised TorchScript program."""
        net = cls(ndim, multiple, in_axes, out_axes, len(blob))
        net.program.copy_(torch.frombuffer(bytearray(blob), dtype=torch.uint8))
        return net

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        """As ``nn.Module``'s, forgetting the program loaded from the previous bytes."""
        self._loaded.clear()  # new bytes: the program is loaded again on the next call
        super()._load_from_state_dict(*args, **kwargs)

    def script(self) -> torch.jit.ScriptModule:
        """The program, loaded once per device (and again after new bytes were loaded)."""
        key = f"{self.program.device}:{self.program.data_ptr()}"
        if key not in self._loaded:
            blob = self.program.detach().cpu().numpy().tobytes()
            net = torch.jit.load(io.BytesIO(blob), map_location=self.program.device)
            self._loaded.clear()
            self._loaded[key] = net.eval()
        return self._loaded[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, *spatial)`` -> ``(N, 1, *spatial)`` through the program."""
        canon = "bc" + "zyx"[3 - self.ndim :]
        if "b" not in self.in_axes and x.shape[0] != 1:
            return torch.cat([self.forward(x[i : i + 1]) for i in range(x.shape[0])])
        y = self.script()(to_axes(x, canon, self.in_axes).contiguous())
        if isinstance(y, (tuple, list)):
            y = y[0]
        return to_axes(y, self.out_axes, canon)


def _neutralise(net: torch.jit.ScriptModule) -> None:
    """Weights positive (+1e-3), biases zero, norm layers the identity: impulses propagate."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() >= 2:
                p.copy_(p.abs() + 1e-3)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.zero_()
            elif name.endswith("running_var"):
                b.fill_(1.0)


def script_reach(net: ForeignNetwork) -> int:
    """One-sided receptive-field radius (px) of the program, by impulse response.

    Raises
    ------
    ValueError
        When the reach keeps growing with the tile (e.g. instance normalisation): tiles of
        such a network can never reproduce the whole image.
    """
    probe = ForeignNetwork.from_bytes(
        net.program.cpu().numpy().tobytes(), net.ndim, net.multiple, net.in_axes, net.out_axes
    )
    _neutralise(probe.script())
    try:
        return impulse_reach(
            probe, net.ndim, 1, net.multiple, max_tile=MAX_REACH_TILE, subtract_zero=True
        )
    except ValueError:
        raise ValueError(
            f"the network's receptive field grows with the tile (over {MAX_REACH_TILE // 2} px): "
            "it is not local (e.g. normalisation over the whole tile), so tiled prediction "
            "cannot be exact"
        ) from None


def shift_equivariant(net: ForeignNetwork, step: int, margin: int) -> bool:
    """True when shifting the input by ``step`` px along every axis shifts the output alike,
    ``margin`` px away from the borders (to 1e-4 of the output's spread)."""
    nd = net.ndim
    n = -(-(2 * margin + step + 8) // 64) * 64  # a multiple of every step tried
    big = torch.randn((1, 1) + (n + 64,) * nd, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya = net(big[(..., *[slice(0, n)] * nd)])
        yb = net(big[(..., *[slice(step, n + step)] * nd)])
    ia = ya[(..., *[slice(step + margin, n - margin)] * nd)]
    ib = yb[(..., *[slice(margin, n - step - margin)] * nd)]
    tol = 1e-4 * max(float(ya.std()), 1e-6)
    return bool(torch.allclose(ia, ib, atol=tol, rtol=1e-4))


def lattice_step(net: ForeignNetwork, reach: int) -> int:
    """The smallest step of :data:`STEPS` the network is shift-equivariant on (``reach``: its
    receptive field at one phase; on a lattice of step ``m`` no phase reaches ``m`` px further).

    Raises
    ------
    ValueError
        When there is none (not a fully convolutional network).
    """
    for step in STEPS:
        if shift_equivariant(net, step, reach + step):
            return step
    raise ValueError(
        f"the network is not shift-equivariant on any lattice step up to {STEPS[-1]} px "
        "(not fully convolutional?): tiled prediction cannot reproduce it"
    )
