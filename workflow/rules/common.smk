# Shared helpers: config + dataset-sheet validation (before any job runs) and input functions.
import os
import sys
from pathlib import Path

from denoise.config import load_workflow_config, read_dataset_sheet, to_json
from denoise.io.omezarr import is_ome_zarr_v05
from denoise.io.sheet_checks import check_sheet_inputs
from denoise.methods.registry import get_method

envvars:
    "PATH",


# The `denoise` console script lives next to the Python running Snakemake (a venv's bin/).
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

# One validation, by the pydantic models that also build every stage's settings (the same
# source as workflow/schemas/*.json; a plug-in method's methods.<name> block is known too).
CFG = load_workflow_config(config, where="config")
SHEET = CFG.datasets
ROWS = {row.name: row for row in read_dataset_sheet(SHEET)}
# The sheet's inputs are opened once per run, by the main process: cluster and subprocess jobs
# re-read the Snakefile and skip it (the main process checked before submitting them).
if not workflow.remote_exec and not workflow.subprocess_exec:
    check_sheet_inputs(list(ROWS.values()), SHEET)
RES = CFG.results
SEED = CFG.seed
DATASETS = list(ROWS)
# Conda env for --software-deployment-method conda (path relative to the rule files).
CONDA_ENV = "../../envs/denoise.yaml"


wildcard_constraints:
    dataset="|".join(DATASETS),


scattergather:
    split=CFG.predict.scatter,


def row(wildcards):
    return ROWS[wildcards.dataset]


def raw_store(wildcards):
    """The dataset's OME-Zarr: the input itself when it is OME-Zarr 0.5 and reuse is on."""
    r = row(wildcards)
    if CFG.ingest.reuse_ome_zarr and is_ome_zarr_v05(r.uri):
        return r.uri
    return f"{RES}/{wildcards.dataset}/raw.ome.zarr"


def source_files(wildcards):
    """Input files Snakemake should watch (single files and PNG series; not directories)."""
    import glob

    uri = row(wildcards).uri
    if any(ch in uri for ch in "*?["):
        return sorted(glob.glob(uri))
    return [uri] if Path(uri).is_file() else []


def spec(wildcards):
    """The row's method declaration (:mod:`denoise.methods.registry`)."""
    return get_method(row(wildcards).method)


def out(rule, wildcards, key=0):
    """Output ``key`` of an earlier rule for these wildcards (no retyped paths)."""
    return str(rule.output[key]).format(**dict(wildcards.items()))


def ingest_of(wildcards):
    return out(rules.ingest, wildcards)


def model_inputs(wildcards):
    if spec(wildcards).trained:
        return {"model": out(rules.train, wildcards)}
    return {}


def model_dir_arg(wildcards):
    if spec(wildcards).trained:
        return f"--model-dir {Path(out(rules.train, wildcards)).parent}"
    return ""


def method_params(wildcards):
    """The row's ``methods.<name>`` block as JSON (only this method's settings)."""
    return CFG.method_json(row(wildcards).method)


def scatter_index(wildcards):
    return int(wildcards.scatteritem.split("-of-")[0]) - 1


def scatter_count(wildcards):
    return int(wildcards.scatteritem.split("-of-")[1])


def all_targets():
    targets = [f"{RES}/report.html"]
    targets += expand(f"{RES}/{{dataset}}/predict.json", dataset=DATASETS)
    targets += expand(f"{RES}/{{dataset}}/metrics.json", dataset=DATASETS)
    return targets


def parent_of_output(levels=1):
    """A params function: the directory ``levels`` up from the rule's first output."""

    def fn(wildcards, output):
        p = Path(output[0])
        for _ in range(levels):
            p = p.parent
        return str(p)

    return fn


def predict_params(levels):
    return dict(
        store=raw_store,
        out_dir=parent_of_output(levels),
        method=lambda w: row(w).method,
        model=model_dir_arg,
        cfg=to_json(CFG.predict),
        method_cfg=method_params,
        seed=SEED,
    )


def report_inputs(wildcards):
    files = expand(f"{RES}/{{dataset}}/predict.json", dataset=DATASETS)
    files += expand(f"{RES}/{{dataset}}/noise_model.json", dataset=DATASETS)
    files += expand(f"{RES}/{{dataset}}/metrics.json", dataset=DATASETS)
    files += [f"{RES}/{d}/model/model.json" for d in DATASETS if get_method(ROWS[d].method).trained]
    return files


def train_inputs(wildcards):
    """The ingest sentinel, plus what the method needs: a fitted noise model, a PSF file."""
    needs = spec(wildcards).needs
    files = {"ingest": ingest_of(wildcards)}
    if "noise_model" in needs:
        files["noise"] = out(rules.fit_noise_model, wildcards, "json")
    if "psf" in needs and row(wildcards).psf:
        files["psf"] = row(wildcards).psf
    return files


def train_extra_args(wildcards, input):
    """--noise-model and --psf for the methods that need them."""
    args = []
    if "noise" in input.keys():
        args.append(f"--noise-model {input.noise}")
    if "psf" in input.keys():
        args.append(f"--psf '{input.psf}'")
    return " ".join(args)


def fit_noise_inputs(wildcards):
    """Ingest sentinel, the bootstrap N2V model (gmm_bootstrap), the calibration files."""
    import glob

    r = row(wildcards)
    files = {"ingest": ingest_of(wildcards)}
    if r.noise_model == "gmm_bootstrap":
        files["n2v"] = out(rules.bootstrap_n2v, wildcards)
    if r.calibration and any(ch in r.calibration for ch in "*?["):
        files["calibration"] = sorted(glob.glob(r.calibration))
    elif r.calibration and Path(r.calibration).is_file():
        files["calibration"] = [r.calibration]
    return files


def fit_noise_args(wildcards, input):
    r = row(wildcards)
    args = []
    if r.calibration:
        args.append(f"--calibration '{r.calibration}' --calibration-axes '{r.calibration_axes}'")
    if "n2v" in input.keys():
        args.append(f"--n2v-model-dir {Path(input.n2v).parent}")
    return " ".join(args)
