"""CAREamics 0.3.5 N2V as a peer, run in its own venv through a subprocess.

CAREamics is a benchmark peer only, never a dependency: it lives in ``.venv-careamics`` (install
recipe in ``shared/peers.md``) and this file is both sides of the exchange:

* :func:`run_careamics_subprocess` (our venv) writes the training data and the planes to
  predict to an ``.npz``, runs this file with the CAREamics venv's python, and reads back
  the predictions and timings;
* ``main`` (CAREamics venv; imports only numpy and careamics) trains CAREamics' default N2V
  (U-Net depth 2, 32 features, patch 64, batch 16, Adam with ReduceLROnPlateau) for at most
  ``--budget`` seconds (Lightning ``max_time``; many epochs planned, so the budget is what stops
  it), then predicts every plane untiled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def run_careamics_subprocess(
    python: Path | None,
    train: np.ndarray,
    axes: str,
    planes: list[np.ndarray],
    budget_s: float,
    seed: int,
    work: Path,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Train CAREamics N2V on ``train`` and predict ``planes`` in the CAREamics venv.

    Parameters
    ----------
    python
        The CAREamics venv's python executable.
    train
        ``(y, x)`` image or ``(t, y, x)`` stack (frames are independent samples).
    axes
        ``"yx"`` or ``"tyx"``.
    planes
        ``(y, x)`` planes to denoise with the trained model.
    budget_s
        Training wall-clock budget (seconds).
    seed
        Run seed (CAREamics gets ``seed + 1``: its seeds must be positive).
    work
        Exchange and work directory.

    Returns
    -------
    predictions, info
        One float32 plane per input plane; ``seconds`` (the whole subprocess, start-up
        included), ``train_s``, ``predict_s``, ``steps``, ``epochs``.

    Raises
    ------
    RuntimeError
        The venv is missing or the subprocess failed (its stderr tail is in the message).
    """
    if python is None or not Path(python).exists():
        raise RuntimeError(f"CAREamics venv python not found: {python}")
    work.mkdir(parents=True, exist_ok=True)
    src, dst = work / "careamics_in.npz", work / "careamics_out.npz"
    dst.unlink(missing_ok=True)
    np.savez(src, train=np.asarray(train, np.float32), planes=np.stack(planes).astype(np.float32))
    cmd = [str(python), str(Path(__file__).resolve()), "--inp", str(src), "--out", str(dst),
           "--axes", "SYX" if axes == "tyx" else "YX", "--budget", str(budget_s),
           "--seed", str(seed), "--work", str(work)]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=3 * budget_s + 900, check=False)  # fmt: skip
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not dst.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-8:]
        raise RuntimeError(f"CAREamics subprocess exited {proc.returncode}: " + " | ".join(tail))
    with np.load(dst) as z:
        preds = [np.asarray(p, np.float32) for p in z["pred"]]
        info = json.loads(str(z["info"]))
    info["seconds"] = seconds
    return preds, info


def main(argv: list[str] | None = None) -> int:
    """Child side (CAREamics venv): train, predict, write ``--out``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--axes", default="YX")
    ap.add_argument("--budget", type=float, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", required=True)
    args = ap.parse_args(argv)

    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    with np.load(args.inp) as z:
        train, planes = z["train"], z["planes"]
    total = int(max(1.0, args.budget))
    max_time = f"00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
    cfg = create_advanced_n2v_config(
        experiment_name="quality_benchmark", data_type="array", axes=args.axes,
        patch_size=[64, 64], batch_size=16, num_epochs=100_000, seed=args.seed + 1,
        trainer_params={"max_time": max_time, "enable_model_summary": False},
    )  # fmt: skip
    careamist = CAREamist(cfg, work_dir=args.work, enable_progress_bar=False)
    t0 = time.perf_counter()
    careamist.train(train_data=train)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    preds = []
    for p in planes:
        out, _ = careamist.predict(p, axes="YX")
        preds.append(
            np.asarray(out[0] if isinstance(out, list) else out, np.float32).reshape(p.shape)
        )
    predict_s = time.perf_counter() - t1
    info = {"train_s": train_s, "predict_s": predict_s,
            "steps": int(careamist.trainer.global_step),
            "epochs": int(careamist.trainer.current_epoch)}  # fmt: skip
    np.savez(args.out, pred=np.stack(preds), info=json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
