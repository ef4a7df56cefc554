"""A small results directory built by running the ``denoise`` CLI stages in-process on the tiny
``.test`` crops (the same stages and arguments as the Snakemake rules, without Snakemake's
process start-up per job), with each stage's measured wall time written as a Snakemake
benchmark table, so the report sees what a workflow run leaves behind.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from denoise.cli.main import main
from tests.conftest import REPO

TEST_DATA = REPO / ".test" / "data"


@dataclass(frozen=True)
class Spec:
    """One sheet row of the tiny run."""

    name: str
    uri: str
    axes: str
    method: str
    gt: str = ""
    gt_axes: str = ""
    pn2v_noise: str = ""  #: ``fit-noise-model --kind`` for PN2V rows


#: Three inputs with two or more methods each (time-lapse, stack with deconvolution, PN2V
#: uncertainty) and a synthetic two-channel image.
SPECS = (
    Spec("fish", "fish_noisy.tif", "yx", "n2v", "fish_gt.tif", "yx"),
    Spec("fish_gauss", "fish_noisy.tif", "yx", "gaussian", "fish_gt.tif", "yx"),
    Spec("fish_pn2v", "fish_noisy.tif", "yx", "pn2v", "fish_gt.tif", "yx", "poisson_gaussian"),
    Spec("timelapse", "tl_*.png", "tyx", "n2v2", "timelapse_gt.png", "yx"),
    Spec("timelapse_gauss", "tl_*.png", "tyx", "gaussian", "timelapse_gt.png", "yx"),
    Spec("nuclei3d", "nuclei3d.tif", "zyx", "deconoising"),
    Spec("nuclei3d_gauss", "nuclei3d.tif", "zyx", "gaussian"),
    Spec("two_channel", "two_channel.npy", "cyx", "gaussian"),
)

BENCH_HEAD = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _two_channel(path: Path) -> None:
    """Two channels of blobs with Poisson noise (different brightness per channel)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :64]
    sig = np.zeros((2, 64, 64))
    for c, (cy, cx) in enumerate(((20, 24), (40, 44))):
        sig[c] = 5 + (40 + 60 * c) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
    np.save(path, rng.poisson(sig).astype(np.uint16))


def _stage(bench: Path, stem: str, argv: list[str]) -> None:
    t0 = time.perf_counter()
    rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"denoise {' '.join(argv[:1])} failed ({rc}): {argv}")
    bench.mkdir(parents=True, exist_ok=True)
    (bench / f"{stem}.tsv").write_text(
        BENCH_HEAD + f"{time.perf_counter() - t0:.4f}" + "\tNA" * 9 + "\n"
    )


def _blocks() -> dict:
    cfg = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())
    return {
        k: json.dumps(cfg.get(k) or {}) for k in ("ingest", "noise_model", "train", "predict")
    } | {"methods": cfg.get("methods") or {}}


def _trained(method: str) -> bool:
    from denoise.methods.registry import get_method

    return bool(get_method(method).trained)


def _stages(spec: Spec, data: Path, d: Path, blocks: dict) -> list[tuple[str, list[str]]]:
    """``(benchmark stem, CLI argv)`` of every stage of one row, in workflow order."""
    store, ingest, noise = (
        str(d / "raw.ome.zarr"),
        str(d / "ingest.json"),
        str(d / "noise_model.json"),
    )
    mp = json.dumps(blocks["methods"].get(spec.method) or {})
    inp = ["--input", str(data / spec.uri), "--axes", spec.axes, "--store", store]
    st = [("ingest", ["ingest", *inp, "--sentinel", ingest, "--params", blocks["ingest"]])]
    nm = ["--out", noise, "--plot", str(d / "noise_model.png"), "--params", blocks["noise_model"]]
    st.append(("noise_model", ["noise-model", "--store", store, "--ingest", ingest, *nm]))
    common = ["--store", store, "--output-dir", str(d), "--method", spec.method]
    common += ["--noise-model", noise, "--ingest", ingest, "--params", blocks["predict"]]
    common += ["--method-params", mp, "--seed", "7"]
    if _trained(spec.method):
        model, extra = str(d / "model"), []
        if spec.pn2v_noise:
            pn = str(d / "pn2v_noise_model.json")
            fit = ["--kind", spec.pn2v_noise, "--store", store, "--ingest", ingest, "--out", pn]
            st.append(("fit_noise_model", ["fit-noise-model", *fit, "--plot", pn[:-4] + "png"]))
            extra = ["--noise-model", pn]
        tr = ["--store", store, "--ingest", ingest, "--model-dir", model, "--method", spec.method]
        tr += ["--params", blocks["train"], "--method-params", mp, "--seed", "7", *extra]
        st.append(("train", ["train", *tr]))
        common += ["--model-dir", model]
    st.append(("init_output", ["init-output", *common, "--sentinel", str(d / "predict/init.json")]))
    part = ["--no-init", "--sentinel", str(d / "predict/part.json")]
    st.append(("predict_1-of-1", ["predict", *common, *part]))
    st.append(("gather_predict", ["gather", *common, "--sentinel", str(d / "predict.json")]))
    gt = ["--ground-truth", str(data / spec.gt), "--gt-axes", spec.gt_axes] if spec.gt else []
    ev = ["--store", store, "--output-dir", str(d), "--method", spec.method, *gt]
    ev += [
        "--noise-model",
        noise,
        "--json",
        str(d / "metrics.json"),
        "--tsv",
        str(d / "metrics.tsv"),
    ]
    st.append(("evaluate", ["evaluate", *ev]))
    return st


def run_row(spec: Spec, data: Path, res: Path, blocks: dict) -> None:
    """Every stage of one row, as the workflow runs them."""
    for stem, argv in _stages(spec, data, res / spec.name, blocks):
        _stage(res / "benchmarks" / spec.name, stem, argv)


def build_results(root: Path, specs: tuple[Spec, ...] = SPECS) -> Path:
    """Run every row of ``specs`` under ``root/results`` (the tiny data copied to ``root/data``)."""
    import shutil

    data, res = root / "data", root / "results"
    shutil.copytree(TEST_DATA, data, dirs_exist_ok=True)
    _two_channel(data / "two_channel.npy")
    blocks = _blocks()
    for spec in specs:
        run_row(spec, data, res, blocks)
    return res
