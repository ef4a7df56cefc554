"""CAREamics 0.3.5 tiled prediction speed, the peer side of ``predict_speed.py``.

Runs in the CAREamics venv (``.venv-careamics``, recipe in ``shared/peers.md``); imports only
numpy, torch and careamics.  Builds CAREamics' default N2V U-Net (depth 2, 32 features), fits it
for a few steps so that its normalisation statistics and Lightning state exist, then times
``CAREamist.predict`` of the same ``--size``² image, tiled (``--tile``, ``--overlap``) and untiled,
best of ``--rounds``.  Prints one ``RESULT {json}`` line.

    .venv-careamics/bin/python benchmarks/careamics_predict_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import warnings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=48)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--untiled", action="store_true", help="also time untiled prediction")
    args = p.parse_args()

    import numpy as np
    import torch

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "careamics"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config

    rng = np.random.default_rng(0)
    img = (500 + 100 * rng.standard_normal((args.size, args.size))).clip(0, 65535).astype(np.float32)
    cfg = create_advanced_n2v_config(
        experiment_name="speed", data_type="array", axes="YX", patch_size=[64, 64],
        batch_size=16, num_epochs=1, seed=1,
        trainer_params={"limit_train_batches": 2, "limit_val_batches": 1, "enable_model_summary": False},
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as work:
        careamist = CAREamist(cfg, work_dir=work, enable_progress_bar=False)
        careamist.train(train_data=img[:256, :256])
        result = {"threads": torch.get_num_threads(), "size": args.size, "tile": args.tile,
                  "overlap": args.overlap, "tiled_s": [], "untiled_s": []}  # fmt: skip
        tile = (args.tile, args.tile)
        overlap = (args.overlap, args.overlap)
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            out, _ = careamist.predict(img, axes="YX", tile_size=tile, tile_overlap=overlap)
            result["tiled_s"].append(time.perf_counter() - t0)
            if args.untiled:
                t0 = time.perf_counter()
                careamist.predict(img, axes="YX")
                result["untiled_s"].append(time.perf_counter() - t0)
        arr = np.asarray(out[0] if isinstance(out, list) else out)
        assert arr.size == img.size, f"unexpected CAREamics output shape {arr.shape}"
    mpix = args.size**2 / 1e6
    result["tiled_mpix_s"] = mpix / min(result["tiled_s"])
    if result["untiled_s"]:
        result["untiled_mpix_s"] = mpix / min(result["untiled_s"])
    print("RESULT", json.dumps(result))


if __name__ == "__main__":
    main()
