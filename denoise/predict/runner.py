"""Out-of-core prediction over OME-Zarr: init → predict units (scattered) → finalize.

* :func:`init_output` creates one float32 OME-Zarr 0.5 store per output name (NaN fill, the
  input's axes, units and scales, provenance attributes), or keeps it when its fingerprint is
  current, or wipes it (and says so) when the fingerprint changed.
* :func:`predict_units` runs this job's units (``u % scatter_count == scatter_index``) through
  a read → compute → write pipeline: reader threads prefetch each unit plus its halo straight
  from the source store (reflect-padded only at true image borders), the calling thread runs the
  predictor on batches of tiles, a writer thread assigns the whole unit at once and then
  atomically writes its marker.  Units with a valid marker are skipped.
* :func:`finalize_output` checks that every unit is marked, builds the pyramid, validates the
  store with ``ome-zarr-models`` and marks it complete.

Predictors follow ``docs/architecture.md``: a *TiledPredictor* (``halo``, ``multiple``) gets
lattice tiles of each unit and is called as ``predictor(tiles, channel=c)``; a *PlanePredictor*
gets whole planes with their ``{"t", "c", "z"}`` index.

A predictor with ``halo_t = k > 0`` sees ``2k + 1`` frames of one channel (and one ``z`` plane
for 2D predictors) per output frame: a PlanePredictor gets ``window`` of shape
``(2k + 1, *spatial)`` with the output frame at ``window[k]`` and ``index["t"]`` its frame, a
TiledPredictor gets tiles ``(N, 2k + 1, *tile)``.  Frames beyond the series' ends come by
reflection without repeating the edge frame (``np.pad(mode="reflect")``: frame ``-1`` is frame
``1``, frame ``n`` is frame ``n - 2``), applied again and again when the series is shorter
than ``k + 1`` frames (period ``2 (n - 1)``; a one-frame series repeats its frame), i.e.
:func:`denoise.tiling.grid.reflect_index`.  Units are then blocks of frames
(:func:`denoise.predict.units.t_block`) read once with their ``k`` frames each side.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from denoise.io import omezarr
from denoise.predict import markers
from denoise.predict.protocols import predictor_kind
from denoise.predict.units import Unit, UnitLayout, output_chunks
from denoise.progress import Progress, progress
from denoise.provenance import STAGE_VERSIONS, atomic_write_json, package_versions, read_json
from denoise.settings import PredictConfig
from denoise.tiling.blend import blend_tiles, read_virtual
from denoise.tiling.grid import TileGrid, plan_grid, reflect_index, round_up

log = logging.getLogger(__name__)

#: Units read ahead of the compute thread, reader threads, writer threads (= writes in flight).
PREFETCH = 3
READERS = 2
WRITERS = 2
#: zarr's own async concurrency per call while the pipeline runs (readers × this in total).
ZARR_CONCURRENCY = 4


# ----------------------------------------------------------------------------- stores
@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on the directory that holds ``path`` (serialises store creation)."""
    parent = path.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def store_fingerprint(path: str | Path) -> str | None:
    """Fingerprint recorded in a store's ``denoise`` attributes (``None`` if absent)."""
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:
        return None
    return dict(group.attrs).get("denoise", {}).get("fingerprint")


def _source(input_store: str | Path) -> tuple[zarr.Array, str, list[list[float]], dict[str, str]]:
    group = omezarr.open_group(input_store)
    axes, scales, units = omezarr.read_axes(group, where=str(input_store))
    arr = group[omezarr.dataset_paths(group)[0]]
    return arr, axes, scales, units


def init_output(
    input_store: str | Path,
    outputs: Mapping[str, str | Path],
    fingerprint: str,
    attributes: Mapping[str, Any],
    *,
    chunks: Sequence[int] | None = None,
) -> None:
    """Create (or keep, or wipe and recreate) the output stores of a prediction run.

    Parameters
    ----------
    input_store
        The OME-Zarr image being predicted.
    outputs
        Output name → store path; each store gets the input's shape, axes, units and scales,
        dtype float32 and a NaN fill value.
    fingerprint
        Run fingerprint.  An existing store with the same fingerprint is kept (resume); one
        with another fingerprint is deleted with a warning; a directory that is not a
        ``denoise`` prediction store is never deleted (``FileExistsError``).
    attributes
        Provenance merged into the ``denoise`` attribute block (config, method, ...); the
        fingerprint, stage version and package versions are added.
    chunks
        Output chunks, i.e. the units of tiled work; default :func:`output_chunks`.
    """
    src, axes, scales, units = _source(input_store)
    chunks = tuple(int(c) for c in chunks) if chunks is not None else output_chunks(src.shape, axes)
    for name, raw_path in outputs.items():
        path = Path(raw_path)
        with _dir_lock(path):
            if path.exists():
                old = store_fingerprint(path)
                if old == fingerprint:
                    arr, _ = omezarr.open_image(path)
                    if tuple(arr.shape) != tuple(src.shape):
                        raise ValueError(f"{path}: shape {arr.shape} differs from the input's {src.shape}")
                    log.info("%s: keeping the existing store (fingerprint %s): resuming", path, fingerprint)
                    continue
                if old is None:
                    raise FileExistsError(
                        f"{path} exists and is not a denoise prediction store; remove it or choose "
                        "another output directory"
                    )
                log.warning(
                    "%s: fingerprint changed (%s -> %s): wiping the old prediction and its markers",
                    path, old, fingerprint,
                )
                shutil.rmtree(path)
            attrs = {
                "versions": package_versions(),
                **dict(attributes),
                "stage": "predict",
                "version": STAGE_VERSIONS["predict"],
                "fingerprint": fingerprint,
                "output": name,
                "input": str(input_store),
                "complete": False,
            }
            tmp = path.with_name(f".{path.name}.init-{os.getpid()}")
            if tmp.exists():
                shutil.rmtree(tmp)
            omezarr.create_image(
                tmp, src.shape, np.float32, axes, chunks,
                scale=dict(zip(axes, scales[0], strict=True)), units=units,
                fill_value=np.float32(np.nan), attributes=attrs, name=name,
            )
            markers.ensure_marker_dir(tmp)
            os.replace(tmp, path)  # a store appears complete with its metadata, or not at all
            log.info("%s: created %s float32 store, chunks %s", path, src.shape, chunks)


# ----------------------------------------------------------------------------- units
def is_tiled(predictor: Any) -> bool:
    """True for TiledPredictors, False for PlanePredictors (their declared ``kind``).

    Raises
    ------
    TypeError
        The predictor declares no kind.
    """
    return predictor_kind(predictor) == "tiled"


def declared_halo_t(predictor: Any) -> int:
    """The predictor's ``halo_t`` (neighbouring frames per side along ``t``; 0 if undeclared)."""
    k = int(getattr(predictor, "halo_t", 0) or 0)
    if k < 0:
        raise ValueError(f"{type(predictor).__name__} declares halo_t = {k}; it must be >= 0")
    return k


@dataclass
class UnitRunner:
    """Everything needed to run one unit: read it, predict it, write it, mark it.

    Paths and numbers only; the arrays are opened lazily, once per process.
    """

    input_store: str
    outputs: dict[str, str]
    fingerprint: str
    layout: UnitLayout
    tiled: bool
    halo: int = 0
    multiple: int = 1
    tile: tuple[int, ...] = ()
    ramp: int = 0
    batch_size: int = 4
    _arrays: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    #: Bytes sliced from the input store by :meth:`read` in this process (``box``) and the
    #: bytes of the stored chunks those slices touch (``chunks``: what zarr decodes).
    bytes_read: dict[str, int] = field(
        default_factory=lambda: {"box": 0, "chunks": 0}, repr=False, compare=False
    )
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def halo_t(self) -> int:
        """Neighbouring frames per side along ``t`` the predictor sees."""
        return self.layout.halo_t

    def source(self) -> zarr.Array:
        """The input's level-0 array (opened once per process)."""
        if "_in" not in self._arrays:
            self._arrays["_in"] = omezarr.open_image(self.input_store)[0]
        return self._arrays["_in"]

    def target(self, name: str) -> zarr.Array:
        """The level-0 array of output ``name`` (opened read-write once per process)."""
        if name not in self._arrays:
            self._arrays[name] = zarr.open_group(self.outputs[name], mode="r+")["s0"]
        return self._arrays[name]

    # The three phases, separately so the local pipeline can overlap them.
    def read(self, unit: Unit) -> np.ndarray:
        """The unit's input (plus halo for tiled predictors), ``(*samples, *spatial)``.

        With ``halo_t = k`` the ``t`` extent is the unit's frames plus ``k`` each side,
        reflected at the series' ends (module docstring); the source is sliced once over the
        distinct frames.
        """
        region, t_local = list(unit.region), None
        if self.halo_t:
            ti = self.layout.axes.index("t")
            r = unit.region[ti]
            idx = reflect_index(r.start - self.halo_t, r.stop + self.halo_t, self.source().shape[ti])
            region[ti] = slice(int(idx.min()), int(idx.max()) + 1)
            t_local = idx - region[ti].start
        if self.tiled:
            lay = self.layout
            grid = self.grid(unit)
            lead = tuple(region[i] for i in lay.sample_axes)
            block = read_virtual(self.source(), grid.read_lo, grid.read_hi, lead=lead)
            sp = lay.spatial_axes
            box = [*lead, *_source_box(grid.read_lo, grid.read_hi, [self.source().shape[i] for i in sp])]
        else:
            box = region
            block = np.asarray(self.source()[tuple(region)])
        self._count(box)
        if t_local is not None and not np.array_equal(t_local, np.arange(block.shape[0])):
            block = np.take(block, t_local, axis=self.layout.axes.index("t"))
        return block

    def _count(self, box: Sequence[slice]) -> None:
        src = self.source()
        item = np.dtype(src.dtype).itemsize
        n_box = item
        n_chunks = item
        for sl, c, n in zip(box, src.chunks, src.shape, strict=True):
            start, stop = sl.indices(n)[:2]
            n_box *= stop - start
            n_chunks *= min(n, -(-stop // c) * c) - (start // c) * c
        with self._count_lock:
            self.bytes_read["box"] += n_box
            self.bytes_read["chunks"] += n_chunks

    def grid(self, unit: Unit) -> TileGrid:
        """The lattice tiles covering the unit's spatial box."""
        sp = self.layout.spatial_axes
        start = [unit.region[i].start for i in sp]
        stop = [unit.region[i].stop for i in sp]
        return plan_grid(start, stop, self.tile, self.halo, self.multiple, self.ramp)

    def compute(self, predictor: Any, unit: Unit, block: np.ndarray) -> np.ndarray:
        """Predict every sample of the unit: ``(n_outputs, *unit_shape)`` float32."""
        lay = self.layout
        names = list(self.outputs)
        shape = tuple(r.stop - r.start for r in unit.region)
        out = np.empty((len(names), *shape), dtype=np.float32)
        c_pos = lay.axes.find("c")
        letters = [lay.axes[i] for i in lay.sample_axes]
        starts = [unit.region[i].start for i in lay.sample_axes]
        grid = self.grid(unit) if self.tiled else None
        k = self.halo_t
        t_at = letters.index("t") if k else -1
        if k:  # every frame enters 2k + 1 windows: convert once
            block = np.asarray(block, dtype=np.float32)
        for sample in unit.samples(lay.sample_axes):
            local = tuple(s - a for s, a in zip(sample, starts, strict=True))
            index = dict(zip(letters, sample, strict=True))
            channel = int(sample[lay.sample_axes.index(c_pos)]) if c_pos >= 0 else 0
            src = local
            if k:  # the block starts k frames before the unit: frames t-k..t+k
                src = (*local[:t_at], slice(local[t_at], local[t_at] + 2 * k + 1), *local[t_at + 1:])
            plane = np.asarray(block[src], dtype=np.float32)
            if self.tiled:
                pred = blend_tiles(
                    lambda t, c=channel: predictor(t, channel=c), plane, grid, self.batch_size
                )
            else:
                pred = np.asarray(predictor(plane, index), dtype=np.float32)
            if pred.shape[0] != len(names):
                raise ValueError(
                    f"predictor returned {pred.shape[0]} output(s) but the run writes {names}"
                )
            out[(slice(None), *local)] = pred
        return out

    def write(self, unit: Unit, result: np.ndarray) -> None:
        """Assign the whole unit to every output, then mark it done in every output."""
        for k, name in enumerate(self.outputs):
            self.target(name)[unit.region] = result[k]
        region = [[r.start, r.stop] for r in unit.region]
        for path in self.outputs.values():
            markers.write_marker(path, unit.id, self.fingerprint, {"region": region})

    def run_unit(self, predictor: Any, uid: int) -> int:
        """Read, predict, write and mark unit ``uid``; returns ``uid``."""
        unit = self.layout.unit(uid)
        self.write(unit, self.compute(predictor, unit, self.read(unit)))
        return uid

    def job_info(self) -> dict[str, Any]:
        """Description of the layout and tiling, stored per job for :func:`finalize_output`."""
        return {
            "fingerprint": self.fingerprint,
            "n_units": len(self.layout),
            "ndim": self.layout.ndim,
            "whole_planes": self.layout.whole_planes,
            "chunks": list(self.layout.chunks),
            "tiled": self.tiled,
            "halo_t": self.halo_t,
            "t_block": self.layout.t_block,
            "halo": self.halo,
            "multiple": self.multiple,
            "tile": list(self.tile),
            "ramp": self.ramp,
        }


def make_runner(
    input_store: str | Path,
    outputs: Mapping[str, str | Path],
    predictor: Any,
    cfg: PredictConfig,
    fingerprint: str,
) -> UnitRunner:
    """Build the :class:`UnitRunner` of a run from the (initialised) output stores."""
    names = list(outputs)
    declared = tuple(getattr(predictor, "output_names", names))
    if set(declared) != set(names):
        raise ValueError(f"predictor outputs {declared} but the run was given stores for {names}")
    outputs = {n: str(outputs[n]) for n in declared}
    first = omezarr.open_image(next(iter(outputs.values())))[0]
    axes = omezarr.open_image(input_store)[1]
    tiled = is_tiled(predictor)
    layout = UnitLayout(
        tuple(first.shape), tuple(first.chunks), axes, int(predictor.ndim),
        whole_planes=not tiled, halo_t=declared_halo_t(predictor),
    )
    if not tiled:
        return UnitRunner(str(input_store), outputs, fingerprint, layout, tiled=False)
    halo, m = int(predictor.halo), int(predictor.multiple)
    if halo % m:
        raise ValueError(f"predictor halo {halo} is not a multiple of 2**depth = {m}")
    rf = getattr(predictor, "receptive_field", None)
    if rf is not None and halo < rf and not cfg.inexact:
        raise ValueError(
            f"halo {halo} px is below the model's receptive field ({rf} px): tiles would show "
            "seams; raise predict.halo or set predict.inexact: true to accept them"
        )
    # Exact tiles need no cross-fade beyond the lattice step; inexact ones fade over the
    # context they lack.
    ramp = m if rf is None or halo >= rf else round_up(max(m, rf - halo), m)
    tile = tuple(cfg.tile_z if layout.axes[i] == "z" else cfg.tile for i in layout.spatial_axes)
    return UnitRunner(
        str(input_store), outputs, fingerprint, layout, tiled=True,
        halo=halo, multiple=m, tile=tile, ramp=ramp, batch_size=cfg.batch_size,
    )


def _source_box(lo: Sequence[int], hi: Sequence[int], shape: Sequence[int]) -> list[slice]:
    """The source slices :func:`read_virtual` reads for the virtual box ``[lo, hi)``."""
    out = []
    for a, b, n in zip(lo, hi, shape, strict=True):
        idx = reflect_index(a, b, n)
        out.append(slice(int(idx.min()), int(idx.max()) + 1))
    return out


# ----------------------------------------------------------------------------- pipeline
def progress_bar(total: int, desc: str) -> Progress:
    """Bar over prediction units: ``n/total``, rate and ETA (:mod:`denoise.progress`)."""
    return progress(total, desc, unit="unit")


def _pipeline(runner: UnitRunner, predictor: Any, todo: Sequence[int], desc: str) -> dict[str, float]:
    """Prefetch threads → compute in this thread → writer thread; returns phase seconds."""
    times = {"read": 0.0, "compute": 0.0, "write": 0.0}
    lock = threading.Lock()

    def timed(phase: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with lock:
                times[phase] += time.perf_counter() - t0

    units = (runner.layout.unit(u) for u in todo)
    reads: deque[tuple[Unit, Future]] = deque()
    writes: deque[Future] = deque()
    with (
        ThreadPoolExecutor(READERS, thread_name_prefix="denoise-read") as readers,
        ThreadPoolExecutor(WRITERS, thread_name_prefix="denoise-write") as writer,
        progress_bar(len(todo), desc) as bar,
    ):
        try:
            def refill() -> None:
                while len(reads) < PREFETCH:
                    unit = next(units, None)
                    if unit is None:
                        return
                    reads.append((unit, readers.submit(timed, "read", runner.read, unit)))

            refill()
            while reads:
                unit, fut = reads.popleft()
                block = fut.result()
                refill()
                result = timed("compute", runner.compute, predictor, unit, block)
                del block
                writes.append(writer.submit(timed, "write", runner.write, unit, result))
                del result
                while writes and (len(writes) > WRITERS or writes[0].done()):
                    writes.popleft().result()
                    bar.update(1)
            while writes:
                writes.popleft().result()
                bar.update(1)
        except BaseException:
            for _, f in reads:
                f.cancel()
            raise
    return times


def job_info_path(store: str | Path, index: int, count: int) -> Path:
    """File recording the layout and tiling job ``index`` of ``count`` used."""
    return markers.marker_dir(store) / f"job-{index:04d}-of-{count:04d}.json"


def predict_units(
    input_store: str | Path,
    outputs: Mapping[str, str | Path],
    predictor: Any,
    cfg: PredictConfig,
    fingerprint: str,
    scatter_index: int = 0,
    scatter_count: int = 1,
) -> dict[str, Any]:
    """Predict this job's units into the output stores, skipping units already marked done.

    Parameters
    ----------
    input_store
        The OME-Zarr image (any ``tczyx`` subset with ``yx``).
    outputs
        Output name → store path, one per ``predictor.output_names``; created by
        :func:`init_output` when missing (or when their fingerprint differs: wiped).
    predictor
        A TiledPredictor (units = output chunks, lattice tiles with halo) or a PlanePredictor
        (units = whole planes).
    cfg
        Tile sizes (``tile``, ``tile_z``), ``batch_size`` and ``inexact``.
    fingerprint
        Run fingerprint written into every unit marker.
    scatter_index, scatter_count
        This job owns the units ``u`` with ``u % scatter_count == scatter_index``.

    Returns
    -------
    dict
        ``n_units``, ``owned``, ``outputs``, ``scatter`` and ``tiling`` (deterministic) plus
        ``computed`` / ``skipped`` (unit ids), ``seconds`` (phase times), ``units_per_s`` and
        ``bytes_read`` (``box``: bytes sliced from the input by this call, ``chunks``: bytes of
        the stored chunks those slices touch; units skipped as done read nothing).
    """
    t0 = time.perf_counter()
    runner, owned, todo, skipped = prepare_run(
        input_store, outputs, predictor, cfg, fingerprint, scatter_index, scatter_count
    )
    with zarr.config.set({"async.concurrency": ZARR_CONCURRENCY}):
        times = _pipeline(runner, predictor, todo, f"predict {scatter_index}/{scatter_count}")
    times["total"] = time.perf_counter() - t0
    log.info("job %d/%d: phase seconds %s", scatter_index, scatter_count, {k: round(v, 1) for k, v in times.items()})
    summary = summarize(runner, owned, todo, skipped, scatter_index, scatter_count, times)
    summary["bytes_read"] = dict(runner.bytes_read)
    return summary


def prepare_run(
    input_store: str | Path,
    outputs: Mapping[str, str | Path],
    predictor: Any,
    cfg: PredictConfig,
    fingerprint: str,
    scatter_index: int,
    scatter_count: int,
) -> tuple[UnitRunner, list[int], list[int], list[int]]:
    """Initialise the stores if needed, record this job, and sort its units.

    Returns
    -------
    (UnitRunner, owned, todo, skipped)
        The runner and the unit ids this job owns, still has to compute, and finds done.
    """
    if any(store_fingerprint(p) != fingerprint for p in outputs.values()):
        init_output(input_store, outputs, fingerprint, {"predict_config": cfg.model_dump(mode="json")})
    runner = make_runner(input_store, outputs, predictor, cfg, fingerprint)
    info = runner.job_info()
    for p in runner.outputs.values():
        atomic_write_json(job_info_path(p, scatter_index, scatter_count), info)
    owned = runner.layout.owned(scatter_index, scatter_count)
    done = markers.units_done_everywhere(runner.outputs.values(), fingerprint)
    todo = [u for u in owned if u not in done]
    skipped = [u for u in owned if u in done]
    log.info(
        "job %d/%d: %d of %d units owned, %d already done, %d to compute (%s)",
        scatter_index, scatter_count, len(owned), len(runner.layout), len(skipped), len(todo),
        (f"tiles {runner.tile}, halo {runner.halo}" if runner.tiled else "whole planes")
        + (f", {runner.halo_t} frame(s) each side along t, {runner.layout.t_block}-frame units"
           if runner.halo_t else ""),
    )
    return runner, owned, todo, skipped


def summarize(
    runner: UnitRunner,
    owned: list[int],
    todo: list[int],
    skipped: list[int],
    scatter_index: int,
    scatter_count: int,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """Summary of one predict job (see :func:`predict_units`)."""
    total = seconds.get("total", 0.0)
    rate = len(todo) / total if total > 0 else 0.0
    log.info("job %d/%d: computed %d units in %.1f s (%.2f units/s)",
             scatter_index, scatter_count, len(todo), total, rate)
    info = runner.job_info()
    return {
        "n_units": len(runner.layout),
        "owned": len(owned),
        "outputs": dict(runner.outputs),
        "scatter": [scatter_index, scatter_count],
        "tiling": {k: info[k] for k in ("tiled", "halo", "multiple", "tile", "ramp", "chunks", "halo_t", "t_block")},
        "computed": todo,
        "skipped": skipped,
        "seconds": seconds,
        "units_per_s": rate,
    }


# ----------------------------------------------------------------------------- finalize
def _job_infos(store: str | Path, fingerprint: str) -> list[dict[str, Any]]:
    d = markers.marker_dir(store)
    infos = []
    for p in sorted(d.glob("job-*.json")) if d.is_dir() else []:
        info = read_json(p)
        if info.get("fingerprint") == fingerprint:
            infos.append(info)
    return infos


def finalize_output(
    input_store: str | Path,
    outputs: Mapping[str, str | Path],
    fingerprint: str,
    scatter_count: int,
) -> dict[str, Any]:
    """Check every unit marker, build the pyramid, validate and mark the stores complete.

    Raises
    ------
    RuntimeError
        When units are missing, naming how many, the first ids and the scatter jobs owning them.
    ValueError
        When a store belongs to another run (fingerprint) or fails OME-Zarr validation.

    Returns
    -------
    dict
        ``n_units`` and, per output, ``path``, ``shape`` and pyramid ``levels`` (deterministic).
    """
    src, _, _, _ = _source(input_store)
    result: dict[str, Any] = {"outputs": {}}
    infos: list[dict[str, Any]] = []
    for path in outputs.values():
        fp = store_fingerprint(path)
        if fp != fingerprint:
            raise ValueError(f"{path}: store fingerprint {fp} is not this run's ({fingerprint}); rerun predict")
        infos += _job_infos(path, fingerprint)
    if not infos:
        raise RuntimeError(f"no predict job has run for fingerprint {fingerprint} on {list(outputs.values())}")
    layouts = {(i["n_units"], i["ndim"], i["whole_planes"], tuple(i["chunks"])) for i in infos}
    if len(layouts) != 1:
        raise RuntimeError(f"predict jobs disagree on the unit layout: {sorted(layouts)}")
    n_units = infos[0]["n_units"]
    done = markers.units_done_everywhere(outputs.values(), fingerprint)
    missing = sorted(set(range(n_units)) - done)
    if missing:
        jobs = sorted({u % scatter_count for u in missing})
        raise RuntimeError(
            f"{len(missing)} of {n_units} units have no valid marker (first: {missing[:10]}); "
            f"rerun predict for scatter job(s) {jobs[:20]} of {scatter_count}"
        )
    result["n_units"] = n_units
    for name, path in outputs.items():
        group = omezarr.open_group(path, mode="r+")
        block = dict(group.attrs).get("denoise", {})
        if tuple(group["s0"].shape) != tuple(src.shape):
            raise ValueError(f"{path}: shape {group['s0'].shape} differs from the input's {src.shape}")
        if block.get("complete") and block.get("levels"):
            levels = int(block["levels"])
            log.info("%s: already complete (%d levels)", path, levels)
        else:
            levels = omezarr.build_pyramid(path)
            omezarr.validate_store(path)
            omezarr.set_attributes(
                omezarr.open_group(path, mode="r+"),
                {"complete": True, "levels": levels, "n_units": n_units,
                 "tiling": {k: infos[0][k] for k in ("tiled", "halo", "multiple", "tile", "ramp", "chunks")}},
            )
            log.info("%s: %d units verified, %d pyramid levels, validated, complete", path, n_units, levels)
        result["outputs"][name] = {"path": str(path), "shape": list(src.shape), "levels": levels}
    return result
