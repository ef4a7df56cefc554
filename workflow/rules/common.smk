# Shared helpers: config + dataset-sheet validation (before any job runs) and input functions.
import functools
import glob
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from denoise.config import auto_choice_lines, load_workflow_config, read_dataset_sheet, to_json
from denoise.io.bmz_package import is_bmz_package
from denoise.io.omezarr import is_ome_zarr_v05 as _is_ome_zarr_v05
from denoise.io.sheet_checks import check_sheet_inputs
from denoise.methods.registry import get_method

envvars:
    "PATH",


# Once per input and process: every job's params ask (raw_store), 7 jobs a row on a large sheet.
is_ome_zarr_v05 = functools.cache(_is_ome_zarr_v05)

# The `denoise` console script lives next to the Python running Snakemake (a venv's bin/).
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

# The cluster site's names (partitions, extra sbatch options for GPU jobs): top-level config
# entries set by the SLURM profile (workflow/profiles/slurm/config.yaml), not part of the
# denoising config, so taken out before it is validated.  Only job resources read them.
SITE_DEFAULTS = {"slurm_cpu_partition": "cpu", "slurm_gpu_partition": "gpu", "slurm_gpu_extra": ""}
SITE = {key: str(config.get(key) or default) for key, default in SITE_DEFAULTS.items()}

# One validation, by the pydantic models that also build every stage's settings (the same
# source as workflow/schemas/*.json; a plug-in method's methods.<name> block is known too).
CFG = load_workflow_config({k: v for k, v in config.items() if k not in SITE}, where="config")
SHEET = CFG.datasets
# Rows with an empty method cell get theirs from the input's header (auto_method rules).
ROWS = {row.name: row for row in read_dataset_sheet(SHEET, CFG.auto_method)}
# The sheet's inputs are opened once per run, by the main process: cluster and subprocess jobs
# re-read the Snakefile and skip it (the main process checked before submitting them).
if not workflow.remote_exec and not workflow.subprocess_exec:
    check_sheet_inputs(list(ROWS.values()), SHEET)
    for _line in auto_choice_lines(list(ROWS.values())):
        print(_line, file=sys.stderr)
RES = CFG.results
SEED = CFG.seed
DATASETS = list(ROWS)
# Sheet groups: rows sharing one model (train_group), in sheet order.
GROUPS = {}
for _name, _row in ROWS.items():
    if _row.group:
        GROUPS.setdefault(_row.group, []).append(_name)
# Conda env for --software-deployment-method conda (path relative to the rule files).
CONDA_ENV = "../../envs/denoise.yaml"


wildcard_constraints:
    dataset="|".join(DATASETS),
    group="|".join(GROUPS) or "(?!)",


scattergather:
    split=CFG.predict.scatter,


def row(wildcards):
    return ROWS[wildcards.dataset]


def raw_store(wildcards):
    """The dataset's OME-Zarr: the input itself when it is OME-Zarr 0.5 and reuse is on."""
    return raw_store_of(wildcards.dataset)


def raw_store_of(name):
    r = ROWS[name]
    if CFG.ingest.reuse_ome_zarr and is_ome_zarr_v05(r.uri):
        return r.uri
    return f"{RES}/{name}/raw.ome.zarr"


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


def model_dir(wildcards):
    """The row's model directory: the sheet's ``model`` (an existing model, no train job) or
    this run's train output; None for methods without a train stage."""
    r = row(wildcards)
    if r.model and is_bmz_package(r.model):
        return str(Path(out(rules.import_bmz, wildcards)).parent)
    if r.model:
        return r.model
    if r.group:
        return group_model_dir(r.group)
    if spec(wildcards).trained:
        return str(Path(out(rules.train, wildcards)).parent)
    return None


def group_model_dir(group):
    """The model directory a sheet group's rows share (rule train_group)."""
    return f"{RES}/groups/{group}/model"


def group_ingests(wildcards):
    """The ingest sentinels of every row of the group, in sheet order."""
    return [str(rules.ingest.output[0]).format(dataset=d) for d in GROUPS[wildcards.group]]


def group_members(wildcards):
    """(store, ingest sentinel) of every row of the group, in sheet order (members.tsv)."""
    return [[raw_store_of(d), i] for d, i in zip(GROUPS[wildcards.group], group_ingests(wildcards))]


def group_row(wildcards):
    """The group's first row: its method, noise model, calibration and PSF are the group's
    (the sheet check makes every row of the group agree on them)."""
    return ROWS[GROUPS[wildcards.group][0]]


def group_method(wildcards):
    return group_row(wildcards).method


def group_train_inputs(wildcards):
    """Members file and every ingest; the group's noise model (PN2V), its PSF file (DecoNoising)."""
    needs = get_method(group_method(wildcards)).needs
    files = {"members": out(rules.group_members, wildcards), "ingests": group_ingests(wildcards)}
    if "noise_model" in needs:
        files["noise"] = out(rules.fit_group_noise_model, wildcards, "json")
    if "psf" in needs and group_row(wildcards).psf:
        files["psf"] = group_row(wildcards).psf
    return files


def group_noise_inputs(wildcards):
    """Members file, every ingest, the group's bootstrap N2V (gmm_bootstrap), calibration files."""
    r = group_row(wildcards)
    files = {"members": out(rules.group_members, wildcards), "ingests": group_ingests(wildcards)}
    if r.noise_model == "gmm_bootstrap":
        files["n2v"] = out(rules.bootstrap_group_n2v, wildcards)
    files.update(calibration_files(r))
    return files


def group_noise_args(wildcards, input):
    return noise_args(group_row(wildcards), input)


def model_inputs(wildcards):
    d = model_dir(wildcards)
    return {"model": f"{d}/model.json"} if d else {}


def model_dir_arg(wildcards):
    d = model_dir(wildcards)
    if not d:
        return ""
    # A sheet model: applied to each channel only with the row's explicit consent.
    each = " --model-each-channel" if row(wildcards).model_each_channel else ""
    return f"--model-dir '{d}'{each}"


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
    files += [
        f"{RES}/{d}/model/model.json"
        for d in DATASETS
        if get_method(ROWS[d].method).trained and not ROWS[d].model and not ROWS[d].group
    ]
    files += [f"{group_model_dir(g)}/model.json" for g in GROUPS]
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
    r = row(wildcards)
    files = {"ingest": ingest_of(wildcards)}
    if r.noise_model == "gmm_bootstrap":
        files["n2v"] = out(rules.bootstrap_n2v, wildcards)
    files.update(calibration_files(r))
    return files


def calibration_files(r):
    """{"calibration": [files]} of a row's calibration stack (a file or a glob), else {}."""
    if r.calibration and any(ch in r.calibration for ch in "*?["):
        return {"calibration": sorted(glob.glob(r.calibration))}
    if r.calibration and Path(r.calibration).is_file():
        return {"calibration": [r.calibration]}
    return {}


def fit_noise_args(wildcards, input):
    return noise_args(row(wildcards), input)


def noise_args(r, input):
    """--calibration / --n2v-model-dir of fit-noise-model for a row (or a group's first row)."""
    args = []
    if r.calibration:
        args.append(f"--calibration '{r.calibration}' --calibration-axes '{r.calibration_axes}'")
    if "n2v" in input.keys():
        args.append(f"--n2v-model-dir {Path(input.n2v).parent}")
    return " ".join(args)


# ----------------------------------------------------------------------------- job resources
# Threads, GPUs, partition, memory and runtime of every job, as functions of the row (its
# method's kind), the input's size and the attempt (a retried job gets `attempt` times the
# memory and runtime).  The SLURM executor maps them to sbatch: threads -> --cpus-per-task
# (--cpus-per-gpu on GPU jobs), gpu -> --gpus, mem_mb -> --mem, runtime (minutes) -> -t,
# slurm_partition -> -p.  Figures and the reasoning behind them: docs/scaling.md.
#: Threads of a network job (train, predict) on a cluster when the config sets none.
CLUSTER_THREADS = 8
#: Prediction throughput assumed for runtime requests: MB of raw input per minute and job
#: (2 CPU threads measured 1.2-1.3 MPix/s = 150 MB/min of uint16; a GPU is far faster).
PREDICT_MB_PER_MIN = 60


def _local_cores():
    """The cores given with --cores, None when there are none (a cluster executor)."""
    from snakemake.exceptions import WorkflowError

    try:
        return workflow.cores
    except WorkflowError:
        return None


def network_threads(configured):
    """Threads of a network job: the config's ``threads``; else, run locally, every core given
    with --cores (the stage has the machine); else (a cluster job, and the job itself, which
    must agree) CLUSTER_THREADS."""

    def fn(wildcards):
        if configured:
            return configured
        if workflow.local_exec and not workflow.remote_exec:
            return _local_cores() or CLUSTER_THREADS
        return CLUSTER_THREADS

    return fn


def gpus(stage):
    """``gpu`` resource: 1 for a row whose method runs a network in ``stage`` ("train" or
    "predict"; trained and zero-shot methods), 0 for classical rows or ``device: cpu``."""
    device = (CFG.train if stage == "train" else CFG.predict).device

    def fn(wildcards):
        if device == "cpu":
            return 0
        return 0 if stage == "predict" and spec(wildcards).kind == "classical" else 1

    return fn


def partition(stage=None):
    """``slurm_partition``: the site's GPU partition for jobs that ask for a GPU, else its CPU one."""
    needs_gpu = gpus(stage) if stage else (lambda wildcards: 0)

    def fn(wildcards):
        return SITE["slurm_gpu_partition" if needs_gpu(wildcards) else "slurm_cpu_partition"]

    return fn


def gpu_extra(stage):
    """``slurm_extra``: the site's extra sbatch options (GPU type, ...) on GPU jobs only."""
    needs_gpu = gpus(stage)
    return lambda wildcards: SITE["slurm_gpu_extra"] if needs_gpu(wildcards) else ""


def _zarr_mb(path):
    """MB of a zarr store's (level-0) array from its metadata, without listing its chunks."""
    import zarr

    from denoise.io import omezarr

    try:
        return omezarr.open_image(path)[0].nbytes / 1e6
    except Exception:
        node = zarr.open(str(path), mode="r")
        return node.nbytes / 1e6 if hasattr(node, "nbytes") else 0.0


@functools.cache
def _source_mb(uri):
    """MB of a sheet input: a file's size, a zarr store's array (metadata only: a terabyte
    store has millions of chunk files), or the files of a glob (PNG series)."""
    paths = sorted(glob.glob(uri)) if any(ch in uri for ch in "*?[") else [uri]
    total = 0.0
    for path in map(Path, paths):
        if path.is_file():
            total += path.stat().st_size / 1e6
        elif path.is_dir():
            try:
                total += _zarr_mb(path)
            except Exception:
                total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
    return total


def raw_mb(wildcards):
    """MB of the dataset as ingested (shape x itemsize from the ingest sentinel); before ingest
    has run, the size of its source on disk."""
    sentinel = Path(ingest_of(wildcards))
    try:
        info = json.loads(sentinel.read_text())
        return math.prod(info["shape"]) * np.dtype(info["dtype"]).itemsize / 1e6
    except (OSError, ValueError, KeyError, TypeError):
        return _source_mb(row(wildcards).uri)


def mem_request(base):
    """``mem_mb`` = attempt x base: every stage streams its data, so memory does not grow with
    the input; a retry after an out-of-memory kill gets more."""
    return lambda wildcards, attempt: int(attempt * base)


def runtime_request(base, per_gb=0.0, scattered=False):
    """``runtime`` in minutes = attempt x (base + per_gb x GB of raw data [/ scatter jobs])."""

    def fn(wildcards, attempt):
        gb = raw_mb(wildcards) / 1024
        if scattered:
            gb /= scatter_count(wildcards)
        return int(math.ceil(attempt * (base + per_gb * gb)))

    return fn
