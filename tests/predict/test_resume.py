"""Resume after SIGKILL: only the unmarked units are recomputed, the result is bit-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from denoise.io import omezarr
from denoise.predict import markers

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys, time
import numpy as np
from scipy import ndimage
from denoise.config import PredictConfig
from denoise.predict.runner import predict_units

src, out, delay, counter = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]

class SlowBox:
    kind, halo_t, ndim, halo, multiple, receptive_field = "tiled", 0, 2, 4, 4, 2
    output_names = ("denoised",)
    def __call__(self, tiles, channel=0):
        with open(counter, "a") as fh:
            fh.write("call\\n")
        time.sleep(delay)
        return ndimage.uniform_filter(tiles, size=(1, 5, 5))[:, None]

summary = predict_units(src, {"denoised": out}, SlowBox(), PredictConfig(tile=32, batch_size=16), "fp-resume")
print("SUMMARY", json.dumps({"computed": summary["computed"], "skipped": summary["skipped"]}))
"""


def _run(src: Path, out: Path, delay: float, counter: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(src), str(out), str(delay), str(counter)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _summary(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    line = next(ln for ln in stdout.splitlines() if ln.startswith("SUMMARY "))
    return json.loads(line[len("SUMMARY "):])


def test_sigkill_then_resume_is_bit_identical(make_store, tmp_path: Path) -> None:
    data = np.random.default_rng(0).normal(100, 20, size=(3, 64, 64)).astype(np.float32)
    src = make_store(data, "tyx", (1, 32, 32))
    n_units = 12
    chunks = (1, 32, 32)  # output chunks = units: 3 × 2 × 2
    from denoise.predict.runner import init_output

    killed, clean = tmp_path / "killed.ome.zarr", tmp_path / "clean.ome.zarr"
    for out in (killed, clean):
        init_output(src, {"denoised": str(out)}, "fp-resume", {}, chunks=chunks)

    # 1. a slow run, killed once k units are marked done
    k = 4
    proc = _run(src, killed, 0.25, tmp_path / "calls_killed.txt")
    deadline = time.monotonic() + 60
    while len(markers.done_units(killed, "fp-resume")) < k:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = markers.done_units(killed, "fp-resume")
    assert k <= len(done) < n_units

    # 2. rerun: only the remaining units are computed (1 predictor call per unit here)
    calls = tmp_path / "calls_resume.txt"
    summary = _summary(_run(src, killed, 0.0, calls))
    assert sorted(summary["skipped"]) == sorted(done)
    assert sorted(summary["computed"]) == sorted(set(range(n_units)) - done)
    assert len(calls.read_text().splitlines()) == n_units - len(done)

    # 3. an uninterrupted run gives the same bits
    full = _summary(_run(src, clean, 0.0, tmp_path / "calls_clean.txt"))
    assert sorted(full["computed"]) == list(range(n_units))
    a = omezarr.open_image(killed)[0][...]
    b = omezarr.open_image(clean)[0][...]
    assert not np.isnan(a).any()
    assert a.tobytes() == b.tobytes()
