"""Helpers for the user-level robustness suite: run ``denoise`` stages as a user would.

Stages run in-process through :func:`denoise.cli.main.main` (fast: torch is imported once) or as
a real ``denoise`` subprocess where a process must be killed.  Every helper returns what the
user sees: the exit code, the ``error:`` line on stderr and the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO

DATA = REPO / ".test" / "data"
DENOISE = Path(sys.executable).parent / "denoise"

#: Tiny stage settings: every stage of a 96×96 image runs in about a second.
INGEST = {"chunk_yx": 32, "chunk_z": 4}
TRAIN = {
    "epochs": 1,
    "steps_per_epoch": 2,
    "batch_size": 2,
    "patch_size": 16,
    "patch_size_z": 4,
    "features": 4,
    "depth": 1,
    "threads": 1,
    "device": "cpu",
}
PREDICT = {"tile": 32, "tile_z": 8, "threads": 1, "device": "cpu", "batch_size": 4}


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Shared 2-core machine: one torch thread is faster under load, and keeps runs bit-identical.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fish(size: int = 96) -> np.ndarray:
    """Top-left ``size``² crop of the real noisy FMD fish image (uint8)."""
    import tifffile

    return tifffile.imread(DATA / "fish_noisy.tif")[:size, :size].copy()


@dataclass
class Result:
    """What a user gets from one ``denoise`` call."""

    rc: int
    err: str  # stderr (the ``denoise <stage>: error: ...`` line)
    log: str  # log records emitted during the call

    @property
    def error(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ": error: " in ln]
        return lines[-1] if lines else ""


@pytest.fixture
def cli(capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> Callable[..., Result]:
    """``cli("ingest", "--input", ...)`` runs ``denoise`` in-process and returns a :class:`Result`."""
    from denoise.cli.main import main

    caplog.set_level(logging.INFO)

    def run(*args: str | Path) -> Result:
        capsys.readouterr()
        caplog.clear()
        rc = main([str(a) for a in args])
        return Result(rc, capsys.readouterr().err, caplog.text)

    return run


class Dataset:
    """The outputs of one dataset laid out as the workflow does (``results/<name>/...``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.store = root / "raw.ome.zarr"
        self.ingest_json = root / "ingest.json"
        self.noise_json = root / "noise_model.json"
        self.noise_png = root / "noise_model.png"
        self.model = root / "model"
        self.denoised = root / "denoised.ome.zarr"
        self.predict_json = root / "predict" / "part_1-of-1.json"
        self.gather_json = root / "predict.json"

    # argument lists of each stage (as the Snakemake rules build them)
    def ingest_args(self, src: str | Path, axes: str = "", params: dict | None = None) -> list:
        return ["ingest", "--input", src, "--axes", axes, "--store", self.store,
                "--sentinel", self.ingest_json, "--params", json.dumps(params or INGEST)]

    def noise_args(self, params: dict | None = None, seed: int = 7) -> list:
        return ["noise-model", "--store", self.store, "--out", self.noise_json, "--plot",
                self.noise_png, "--params", json.dumps(params or {"max_samples": 10_000}),
                "--seed", str(seed)]

    def train_args(self, params: dict | None = None, method: str = "n2v") -> list:
        return ["train", "--store", self.store, "--model-dir", self.model, "--method", method,
                "--params", json.dumps({**TRAIN, **(params or {})}), "--seed", "7"]

    def _predict_common(self, method: str, params: dict | None,
                        method_params: dict | None = None) -> list:
        args = ["--store", self.store, "--output-dir", self.root, "--method", method,
                "--params", json.dumps({**PREDICT, **(params or {})}), "--seed", "7",
                "--method-params", json.dumps(method_params or {})]
        if method in ("n2v", "n2v2"):
            args += ["--model-dir", self.model]
        return args

    def predict_args(self, method: str = "n2v", params: dict | None = None, index: int = 0,
                     count: int = 1, no_init: bool = False,
                     method_params: dict | None = None) -> list:
        sentinel = self.root / "predict" / f"part_{index + 1}-of-{count}.json"
        return ["predict", *self._predict_common(method, params, method_params),
                "--scatter-index", str(index),
                "--scatter-count", str(count), "--sentinel", sentinel,
                *(["--no-init"] if no_init else [])]

    def init_args(self, method: str = "n2v", params: dict | None = None) -> list:
        return ["init-output", *self._predict_common(method, params),
                "--sentinel", self.root / "predict" / "init.json"]

    def gather_args(self, method: str = "n2v", params: dict | None = None, count: int = 1,
                    method_params: dict | None = None) -> list:
        return ["gather", *self._predict_common(method, params, method_params),
                "--scatter-count", str(count),
                "--sentinel", self.gather_json]

    def output(self) -> np.ndarray:
        from denoise.io import omezarr

        return omezarr.open_image(self.denoised)[0][...]

    def raw(self) -> np.ndarray:
        from denoise.io import omezarr

        return omezarr.open_image(self.store)[0][...]

    def complete(self) -> bool:
        """True when the prediction store is marked complete (what gather records)."""
        import zarr

        if not self.denoised.exists():
            return False
        return bool(dict(zarr.open_group(str(self.denoised), mode="r").attrs)
                    .get("denoise", {}).get("complete"))

    def leftovers(self) -> list[str]:
        """Names under the dataset directory that could be taken for a finished ingest."""
        return sorted(p.name for p in self.root.glob("raw.ome.zarr*"))


def assert_refused(res: Result, *needles: str, rc: int = 1) -> None:
    """A clean refusal: exit code ``rc``, one error line containing every needle, no traceback."""
    assert res.rc == rc, (res.rc, res.err)
    assert "Traceback" not in res.err
    for n in needles:
        assert n in res.error, f"{n!r} not in {res.error!r}"


def tree_digest(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` (or the file itself) with its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- subprocesses
def start(*args: str | Path, stderr: Path) -> subprocess.Popen:
    """Start ``denoise <args>`` as its own process, stderr to a file (for polling)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with stderr.open("w") as fh:
        return subprocess.Popen([str(DENOISE), *map(str, args)], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=fh, env=env)


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool], what: str,
              timeout: float = 120.0, log: Path | None = None) -> None:
    """SIGKILL ``proc`` as soon as ``condition()`` holds; fail if it exits or stalls first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            detail = log.read_text()[-2000:] if log else ""
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}\n{detail}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout} s")
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -9


# ----------------------------------------------------------------------------- file systems
def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """A real ``size_kib`` KiB tmpfs at ``path`` (skips the test where mounting is impossible)."""
    path.mkdir(parents=True, exist_ok=True)
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root (the injected-ENOSPC tests cover this case)")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(directory: Path, leave: int = 0) -> Path:
    """Fill the file system of ``directory`` until ``leave`` bytes remain; returns the filler."""
    filler = directory / "filler.bin"
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as fh:
        st = os.statvfs(directory)
        for _ in range(max(0, st.f_bavail * st.f_frsize - leave) // len(block)):
            try:
                fh.write(block)
            except OSError:
                break
    return filler


@contextlib.contextmanager
def read_only(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Make ``directory`` read-only; yields the mechanism used (see tests/README.md).

    * not root: ``chmod 555`` (the kernel then refuses writes);
    * root (``chmod`` does not stop root): a read-only bind mount of the directory onto itself;
    * root without mount rights: an injected refusal (``os.access`` reports the directory as
      not writable, and zarr's store raises ``PermissionError``).
    """
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield "chmod 555"
        finally:
            directory.chmod(mode)
        return
    if _can_mount():
        d = str(directory)
        bind = subprocess.run(["mount", "--bind", d, d], capture_output=True)
        if bind.returncode == 0:
            ro = subprocess.run(["mount", "-o", "remount,ro,bind", d], capture_output=True)
            try:
                if ro.returncode == 0:
                    yield "read-only bind mount"
                    return
            finally:
                subprocess.run(["umount", "-l", d], check=False)
    yield from _injected_read_only(directory, monkeypatch)


def _injected_read_only(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import errno

    from zarr.storage import LocalStore

    real_access = os.access
    root = str(directory.resolve())

    def access(path, mode, *a, **k):
        if mode & os.W_OK and str(Path(path).resolve()).startswith(root):
            return False
        return real_access(path, mode, *a, **k)

    async def refuse(self, key, value, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), key)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(LocalStore, "set", refuse)
    yield "injected PermissionError"
