"""Scale benchmark: stream a large uint16 time-lapse through ``predict`` with bounded memory.

Generates (once, cached) a ``t, y, x`` uint16 OME-Zarr (default 2048 × 1024 × 1024 = 4 GiB,
chunks ``1 × 256 × 256`` like ``ingest``), then, each phase in its own subprocess so its peak
RSS is measured separately (``os.wait4``):

1. ``copy``: a plain dask read + write copy of the same array (same chunks and codec);
2. ``copy32``: the same copy converting to float32 in output-sized chunks (the bytes the
   stage has to write);
3. ``predict``: ``predict_units`` with a trivial TiledPredictor (identity with a halo of 8 px,
   so units are read with their halo and reflect padding), i.e. the stage minus the model;
4. ``finalize``: marker check, pyramid, validation.

With ``--halo-t K`` (K > 0) the ``predict`` phase uses :class:`TrivialWindowPredictor` instead:
the same identity with a halo of K frames each side along ``t`` (it returns the centre frame of
each ``2K + 1``-frame window), so the runner's frame blocks and reflected ends are exercised.
The phase then reports the bytes it read from the input (``bytes_read``: the slices taken and
the stored chunks they touch) over the input's bytes; the issue's target is at most 1.5× (one-
frame units would read every frame ``2K + 1`` times).  Only the ``predict`` and ``finalize``
phases run unless ``--copies`` is given.  A small run on a shared machine::

    .venv/bin/python benchmarks/predict_scale.py --workdir /tmp/denoise_scale_t \
        --frames 128 --size 1024 --halo-t 2 --scatter 4

Measured 2026-12-04 (b553797, 2-core machine at load 11–14, niced): ``--frames 2048 --size
1024 --halo-t 2 --scatter 4`` (4 GiB) read 1.248× the input's bytes (target <= 1.5×), peak RSS
0.73 GiB in the predict phase and for the whole run under ``/usr/bin/time -v`` (target
< 2 GiB); predict 400 s, gather 1659 s (upper bounds; see docs/scaling.md).  With ``--halo-t 3`` (k = 3,
the default since c9c3969) on a quiet machine: 1.249×, peak RSS 0.86 GiB, predict 61 s,
gather 72 s.

Prints throughput (MPix/s, MB/s of input) and the stage/copy ratios measured in this run.
Run it under ``/usr/bin/time -v`` to get the peak RSS of the whole run as well::

    /usr/bin/time -v .venv/bin/python benchmarks/predict_scale.py --workdir /tmp/denoise_scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


class TrivialPredictor:
    """Identity TiledPredictor with a small halo (no compute: measures the pipeline)."""

    ndim = 2
    kind, halo_t = "tiled", 0
    halo = 8
    multiple = 8
    receptive_field = 0
    output_names = ("denoised",)

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        return tiles[:, None]


class TrivialWindowPredictor(TrivialPredictor):
    """Identity TiledPredictor that needs ``halo_t`` frames each side: returns the centre frame
    of every ``(N, 2k + 1, y, x)`` window and counts the windows' frames it was given."""

    def __init__(self, halo_t: int) -> None:
        self.halo_t = halo_t
        self.frames_seen = 0

    def __call__(self, tiles: np.ndarray, channel: int = 0) -> np.ndarray:
        if tiles.ndim != 4 or tiles.shape[1] != 2 * self.halo_t + 1:
            raise ValueError(f"expected (N, {2 * self.halo_t + 1}, y, x) windows, got {tiles.shape}")
        self.frames_seen += tiles.shape[0] * tiles.shape[1]
        return np.ascontiguousarray(tiles[:, self.halo_t, None])


def generate(path: Path, frames: int, size: int, seed: int = 0) -> None:
    """A noisy moving-blob time-lapse, uint16, written frame by frame (2 threads)."""
    from denoise.io import omezarr

    done = path / ".generated.json"
    if done.exists() and json.loads(done.read_text()) == {"frames": frames, "size": size, "seed": seed}:
        print(f"reusing {path}", flush=True)
        return
    if path.exists():
        shutil.rmtree(path)
    arr = omezarr.create_image(path, (frames, size, size), np.uint16, "tyx", (1, 256, 256),
                               scale={"y": 0.1, "x": 0.1, "t": 1.0})
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = 200 + 800 * np.exp(-((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / 0.02)
    noise = np.random.default_rng(seed).normal(0, 30, size=(8, size, size)).astype(np.float32)

    def frame(t: int) -> None:
        img = np.roll(base, (t * 3) % size, axis=1) + noise[t % 8] + (t % 13)
        arr[t] = np.clip(img, 0, 65535).astype(np.uint16)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(frame, range(frames)))
    done.write_text(json.dumps({"frames": frames, "size": size, "seed": seed}))
    print(f"generated {path} in {time.perf_counter() - t0:.1f} s", flush=True)


def phase_copy(src: Path, dst: Path, float32: bool) -> None:
    """Plain dask zarr → zarr copy (optionally to float32 in 1 × 1024 × 1024 chunks)."""
    import dask
    import dask.array as da
    import zarr

    from denoise.io import omezarr

    arr, _ = omezarr.open_image(src)
    x = da.from_zarr(arr)
    chunks = arr.chunks
    if float32:
        chunks = (1, min(1024, arr.shape[1]), min(1024, arr.shape[2]))
        x = x.rechunk(chunks).astype(np.float32)
    if dst.exists():
        shutil.rmtree(dst)
    out = zarr.create_array(str(dst), shape=arr.shape, chunks=chunks, dtype=x.dtype,
                            fill_value=np.nan if float32 else 0)
    with dask.config.set(scheduler="threads"):
        da.store(x, out, lock=False)


def phase_predict(src: Path, dst: Path, tile: int, halo_t: int = 0, scatter: int = 1) -> None:
    """``predict_units`` with the trivial predictor (one tile per 1024² unit), the ``scatter``
    jobs one after the other in this process; bytes read are summed over the jobs."""
    from denoise.config import PredictConfig
    from denoise.io import omezarr
    from denoise.predict.runner import init_output, predict_units

    if dst.exists():
        shutil.rmtree(dst)
    outputs = {"denoised": str(dst)}
    init_output(src, outputs, "bench", {"benchmark": "predict_scale"})
    predictor = TrivialWindowPredictor(halo_t) if halo_t else TrivialPredictor()
    seconds, box, chunks = {}, 0, 0
    for i in range(scatter):
        summary = predict_units(src, outputs, predictor, PredictConfig(tile=tile), "bench", i, scatter)
        for k, v in summary["seconds"].items():
            seconds[k] = seconds.get(k, 0.0) + v
        box += summary["bytes_read"]["box"]
        chunks += summary["bytes_read"]["chunks"]
    arr, _ = omezarr.open_image(src)
    nbytes = arr.nbytes
    print("PHASE", json.dumps({
        "pipeline_seconds": seconds, "input_bytes": nbytes, "bytes_read": box, "chunk_bytes_read": chunks,
        "read_ratio": box / nbytes, "chunk_read_ratio": chunks / nbytes,
        "t_block": summary["tiling"]["t_block"], "halo_t": halo_t, "scatter": scatter,
        "frames_given_to_predictor": getattr(predictor, "frames_seen", None),
    }), flush=True)


def phase_finalize(src: Path, dst: Path, scatter: int = 1) -> None:
    """Markers, pyramid, validation."""
    from denoise.predict.runner import finalize_output

    finalize_output(src, {"denoised": str(dst)}, "bench", scatter)


def vm_hwm_gib() -> float:
    """Peak RSS of this process since its exec (``VmHWM``; ``ru_maxrss`` would include the
    parent's RSS at fork time)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def run_phase(args: argparse.Namespace, name: str) -> dict[str, float]:
    """Run one phase in a child process; wall time and its own peak RSS (``VmHWM``)."""
    cmd = [sys.executable, __file__, "--phase", name, "--workdir", str(args.workdir),
           "--frames", str(args.frames), "--size", str(args.size), "--tile", str(args.tile),
           "--halo-t", str(args.halo_t), "--scatter", str(args.scatter)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"phase {name} failed with status {proc.returncode}")
    out = {"seconds": wall}
    for line in proc.stdout.splitlines():
        if line.startswith("PHASE "):
            out.update(json.loads(line[len("PHASE "):]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/denoise_scale"))
    p.add_argument("--frames", type=int, default=2048)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--tile", type=int, default=1040, help="predict tile edge (1024 + 2 halo: one tile per unit)")
    p.add_argument("--halo-t", type=int, default=0,
                   help="frames each side along t the trivial predictor needs (0: frame by frame)")
    p.add_argument("--scatter", type=int, default=1, help="predict jobs (run one after the other)")
    p.add_argument("--copies", action="store_true",
                   help="with --halo-t: run the copy phases too (they always run without it)")
    p.add_argument("--phase", choices=["copy", "copy32", "predict", "finalize"], help=argparse.SUPPRESS)
    p.add_argument("--keep", action="store_true", help="keep the outputs")
    args = p.parse_args()
    src = args.workdir / "input.ome.zarr"
    if args.phase:
        t0 = time.perf_counter()
        if args.phase in ("copy", "copy32"):
            phase_copy(src, args.workdir / f"{args.phase}.zarr", float32=args.phase == "copy32")
        elif args.phase == "predict":
            phase_predict(src, args.workdir / "pred.ome.zarr", args.tile, args.halo_t, args.scatter)
        else:
            phase_finalize(src, args.workdir / "pred.ome.zarr", args.scatter)
        print("PHASE", json.dumps({"work_seconds": time.perf_counter() - t0, "peak_rss_gib": vm_hwm_gib()}))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    generate(src, args.frames, args.size)
    pixels = args.frames * args.size * args.size
    gib = pixels * 2 / 2**30
    print(f"input: {args.frames} x {args.size} x {args.size} uint16 = {gib:.2f} GiB, load {os.getloadavg()}")
    res = {}
    phases = ("copy", "copy32", "predict", "finalize")
    if args.halo_t and not args.copies:
        phases = ("predict", "finalize")
    for name in phases:
        res[name] = run_phase(args, name)
        r = res[name]
        w = r["work_seconds"]
        print(f"{name:9s} {w:8.1f} s  {pixels / w / 1e6:7.1f} MPix/s  {pixels * 2 / w / 1e6:7.1f} MB/s (input)"
              f"  peak RSS {r['peak_rss_gib']:.2f} GiB", flush=True)
    peak = max(r["peak_rss_gib"] for r in res.values())
    result = {"peak_rss_gib": peak, "phases": res, "frames": args.frames, "size": args.size,
              "halo_t": args.halo_t, "scatter": args.scatter}
    if "copy" in res:
        # throughput ratios on the work itself (interpreter start-up and imports excluded)
        result["ratio_vs_copy"] = res["copy"]["work_seconds"] / res["predict"]["work_seconds"]
        result["ratio_vs_copy32"] = res["copy32"]["work_seconds"] / res["predict"]["work_seconds"]
        print(f"stage/copy throughput ratio: {result['ratio_vs_copy']:.2f} (target >= 0.70); "
              f"vs float32 copy: {result['ratio_vs_copy32']:.2f}")
    if args.halo_t:
        pr = res["predict"]
        print(f"halo_t {args.halo_t}, scatter {args.scatter}, {pr['t_block']}-frame units: read "
              f"{pr['read_ratio']:.3f}x the input's bytes (slices), {pr['chunk_read_ratio']:.3f}x "
              "(stored chunks touched); target <= 1.5x")
    print(f"peak RSS of any phase: {peak:.2f} GiB (target < 2 GiB); driver {vm_hwm_gib():.2f} GiB; "
          f"load {os.getloadavg()}")
    print("RESULT", json.dumps(result))
    if not args.keep:
        for name in ("copy.zarr", "copy32.zarr", "pred.ome.zarr"):
            shutil.rmtree(args.workdir / name, ignore_errors=True)


if __name__ == "__main__":
    main()
