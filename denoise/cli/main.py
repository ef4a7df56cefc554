"""``denoise`` command line: one subcommand per pipeline stage.

Each Snakemake rule calls exactly one of these subcommands, so every stage also runs without
Snakemake.  Settings arrive as ``--params`` JSON (validated by the pydantic models in
:mod:`denoise.config`); each stage writes a small deterministic JSON sentinel.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from denoise import __version__

log = logging.getLogger("denoise")


def _params(model: type, raw: str | None, where: str) -> Any:
    from pydantic import ValidationError

    from denoise.config import ConfigError, format_validation_error

    try:
        return model.model_validate(json.loads(raw) if raw else {})
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: --params is not valid JSON ({exc})") from None
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def _outputs(output_dir: str, method: str) -> dict[str, str]:
    from denoise.methods.registry import output_names

    return {name: str(Path(output_dir) / f"{name}.ome.zarr") for name in output_names(method)}


# ---------------------------------------------------------------- stages
def cmd_ingest(a: argparse.Namespace) -> None:
    from denoise.config import IngestConfig
    from denoise.io.ingest import ingest
    from denoise.provenance import atomic_write_json

    cfg = _params(IngestConfig, a.params, "ingest --params")
    summary = ingest(
        a.input, a.store, axes=a.axes or "", cfg=cfg, allow_nonfinite=a.allow_nonfinite
    )
    atomic_write_json(a.sentinel, summary)


def cmd_noise_model(a: argparse.Namespace) -> None:
    from denoise.config import NoiseModelConfig
    from denoise.noise.plot import plot_noise_model
    from denoise.noise.poisson_gaussian import estimate_poisson_gaussian
    from denoise.provenance import STAGE_VERSIONS, atomic_write_json, fingerprint, read_json

    cfg = _params(NoiseModelConfig, a.params, "noise-model --params")
    result = estimate_poisson_gaussian(a.store, cfg, seed=a.seed)
    ingest_fp = read_json(a.ingest)["fingerprint"] if a.ingest else ""
    result.update(
        stage="noise_model",
        version=STAGE_VERSIONS["noise_model"],
        fingerprint=fingerprint(
            "noise_model", STAGE_VERSIONS["noise_model"], ingest_fp, cfg.model_dump(), a.seed
        ),
    )
    if a.plot:
        plot_noise_model(result, a.plot)
    atomic_write_json(a.out, result)


def _method_settings(method: str, raw: str | None, where: str) -> Any:
    """The method's own settings (``methods.<name>``) from ``--method-params`` JSON."""
    from denoise.methods.registry import get_method

    return _params(get_method(method).settings, raw, where)


def _members(a: argparse.Namespace, stage: str) -> list[Any]:
    """Every store the stage works on, as :class:`~denoise.io.group_members.GroupMember`:
    ``--store``/``--ingest``, then ``--group-store``/``--group-ingest`` pairs, then the rows of
    ``--group-members FILE`` (a sheet group; more than one member trains one model on all)."""
    from denoise.config import GROUP_METHODS
    from denoise.io.group_members import GroupMember, read_group_members

    members = [GroupMember(a.store, a.ingest or "")] if a.store else []
    group_store = getattr(a, "group_store", None) or []
    ingests = getattr(a, "group_ingest", None) or []
    if ingests and len(ingests) != len(group_store):
        raise ValueError("--group-ingest: give one per --group-store, in the same order")
    ingests = ingests or [""] * len(group_store)
    members += [GroupMember(s, i) for s, i in zip(group_store, ingests, strict=True)]
    if a.group_members:
        members += read_group_members(a.group_members)
    if not members:
        raise ValueError(f"{stage}: give --store (one image) or --group-members FILE (a group)")
    method = getattr(a, "method", None)
    if len(members) > 1 and method is not None and method not in GROUP_METHODS:
        raise ValueError(
            f"{stage} --group-members: method '{method}': group training supports "
            f"{', '.join(GROUP_METHODS)}"
        )
    return members


def _ingest_fingerprints(members: list[Any]) -> list[Any]:
    """Each member's ingest fingerprint (its store path when it has no ingest sentinel)."""
    from denoise.provenance import read_json

    return [read_json(m.ingest)["fingerprint"] if m.ingest else m.store for m in members]


def cmd_train(a: argparse.Namespace) -> None:
    from denoise.methods.registry import TrainRequest, get_method
    from denoise.provenance import STAGE_VERSIONS, fingerprint, read_json
    from denoise.settings import TrainConfig

    spec = get_method(a.method)
    if spec.train is None:
        raise ValueError(f"method '{a.method}' has no training stage (it is {spec.kind})")
    cfg = _params(TrainConfig, a.params, "train --params")
    settings = _method_settings(a.method, a.method_params, "train --method-params")
    members = _members(a, "train")
    fps = _ingest_fingerprints(members)
    ingest_fp = fps[0] if members[0].ingest else ""
    # A group: every further store's ingest fingerprint enters the train fingerprint.
    extra: list[Any] = ["group", *fps[1:]] if len(members) > 1 else []
    if a.noise_model:
        extra.append(read_json(a.noise_model).get("fingerprint", a.noise_model))
    if a.psf:
        from denoise.provenance import file_sha256

        extra.append(file_sha256(a.psf))
    fp = fingerprint(
        "train",
        STAGE_VERSIONS["train"],
        ingest_fp,
        a.method,
        cfg.model_dump(),
        settings.model_dump(),
        a.seed,
        *extra,
    )
    request = TrainRequest(
        store=members[0].store,
        model_dir=a.model_dir,
        train=cfg,
        settings=settings,
        seed=a.seed,
        fingerprint=fp,
        noise_model=a.noise_model or None,
        psf=a.psf or None,
        stores=tuple(m.store for m in members) if len(members) > 1 else (),
    )
    summary = spec.train(request)
    # The trainers write MODEL_DIR/model.json (the rule's sentinel) atomically at the end.
    log.info("trained %s: %s", a.method, json.dumps(summary, default=str)[:300])


def cmd_fit_noise_model(a: argparse.Namespace) -> None:
    from denoise.config import NoiseModelConfig
    from denoise.noise.base import save_noise_models
    from denoise.noise.calibration import fit_noise_model
    from denoise.noise.plot_models import plot_noise_models
    from denoise.provenance import (
        STAGE_VERSIONS,
        atomic_write_json,
        fingerprint,
        input_identity,
        read_json,
    )

    cfg = _params(NoiseModelConfig, a.params, "fit-noise-model --params")
    members = _members(a, "fit-noise-model")
    stores = [m.store for m in members]
    models = fit_noise_model(
        a.kind,
        stores if len(stores) > 1 else stores[0],
        cfg,
        calibration_uri=a.calibration or "",
        calibration_axes=a.calibration_axes or "",
        n2v_model_dir=a.n2v_model_dir,
        seed=a.seed,
    )
    tmp = Path(a.out).with_suffix(".models.json")
    save_noise_models(models, tmp)
    data = read_json(tmp)
    tmp.unlink()
    parts: list[Any] = [a.kind, cfg.model_dump(), a.seed]
    fps = _ingest_fingerprints(members)
    parts.append(fps[0])
    if len(fps) > 1:
        parts += ["group", *fps[1:]]
    if a.calibration:
        parts.append(input_identity(a.calibration))
    if a.n2v_model_dir:
        parts.append(read_json(Path(a.n2v_model_dir) / "model.json").get("sha256"))
    data.update(
        stage="fit_noise_model",
        version=STAGE_VERSIONS["noise_model"],
        kind=a.kind,
        fingerprint=fingerprint("fit_noise_model", *parts),
    )
    if a.plot:
        plot_noise_models([{a.kind: m} for m in models], a.plot, title=f"{a.kind} noise model")
    atomic_write_json(a.out, data)


def _predict_fingerprint(a: argparse.Namespace, cfg: Any) -> str:
    from denoise.provenance import STAGE_VERSIONS, fingerprint, read_json

    parts: list[Any] = ["predict", STAGE_VERSIONS["predict"], a.method, a.seed]
    parts.append(read_json(a.ingest)["fingerprint"] if a.ingest else str(a.store))
    if a.model_dir:
        parts.append(read_json(Path(a.model_dir) / "model.json").get("sha256", ""))
        if getattr(a, "model_each_channel", False):
            parts.append("model_each_channel")
    if a.noise_model:
        parts.append(read_json(a.noise_model).get("fingerprint", ""))
    parts.append(cfg.model_dump(exclude={"scatter", "threads", "device"}))
    parts.append(_method_settings(a.method, a.method_params, "--method-params").model_dump())
    return fingerprint(*parts)


def _predict_setup(a: argparse.Namespace) -> tuple[Any, dict[str, str], str]:
    from denoise.methods.registry import check_method
    from denoise.settings import PredictConfig

    check_method(a.method)
    cfg = _params(PredictConfig, a.params, "predict --params")
    return cfg, _outputs(a.output_dir, a.method), _predict_fingerprint(a, cfg)


def _model_provenance(a: argparse.Namespace) -> dict[str, Any]:
    """The model applied: its directory (absolute) and model.pt's sha256 (from model.json)."""
    from denoise.provenance import read_json

    meta = read_json(Path(a.model_dir) / "model.json")
    out = {"path": str(Path(a.model_dir).resolve()), "sha256": meta.get("sha256")}
    if meta.get("bmz_package"):  # imported from one of our BMZ packages
        out["bmz_package"] = meta["bmz_package"]
    return out


class _EachChannel:
    """A single-channel TiledPredictor applied to every channel (``--model-each-channel``):
    every channel is normalised with the model's one set of training statistics."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, tiles: Any, channel: int = 0) -> Any:
        return self.inner(tiles, 0)


def _model_checks(a: argparse.Namespace, predictor: Any) -> Any:
    """Job 0 warns in its log when the data's intensities lie far outside the model's training
    statistics (:mod:`denoise.io.intensity`); consent wraps a single-channel model."""
    from denoise.io.intensity import range_warnings
    from denoise.provenance import read_json

    meta = read_json(Path(a.model_dir) / "model.json")
    each = bool(getattr(a, "model_each_channel", False))
    if a.scatter_index == 0 and meta.get("norm"):
        try:
            lines = range_warnings(a.store, meta["norm"], each_channel=each)
        except (OSError, ValueError, KeyError, IndexError) as exc:  # a check, never a failure
            lines = [f"the input's intensity range could not be compared ({exc})"]
        for line in lines:
            log.warning("model %s: %s", a.model_dir, line)
    if each and len(meta.get("norm", {}).get("mean", [0])) == 1 and predictor.kind == "tiled":
        return _EachChannel(predictor)
    return predictor


def _foreign_predictor(a: argparse.Namespace, cfg: Any) -> Any | None:
    """The tiled predictor of a model imported from a foreign BMZ package (None: not one)."""
    from denoise.export.bmz_foreign import foreign_predictor, is_foreign_model

    return foreign_predictor(a.model_dir, cfg, a.store) if is_foreign_model(a.model_dir) else None


def cmd_init_output(a: argparse.Namespace) -> None:
    from denoise.predict.runner import init_output
    from denoise.provenance import STAGE_VERSIONS, atomic_write_json, package_versions

    cfg, outputs, fp = _predict_setup(a)
    attrs = {
        "stage": "predict",
        "method": a.method,
        "fingerprint": fp,
        "predict_config": cfg.model_dump(mode="json"),
        "method_settings": _method_settings(
            a.method, a.method_params, "--method-params"
        ).model_dump(mode="json"),
        "seed": a.seed,
        "versions": package_versions(),
    }
    if a.model_dir:
        from denoise.provenance import read_json

        meta = read_json(Path(a.model_dir) / "model.json")
        attrs["model"] = {
            k: meta.get(k) for k in ("sha256", "fingerprint", "method", "train_config")
        }
        attrs["model"].update(_model_provenance(a))
    init_output(a.store, outputs, fp, attrs)
    atomic_write_json(
        a.sentinel,
        {
            "stage": "init_output",
            "version": STAGE_VERSIONS["predict"],
            "fingerprint": fp,
            "outputs": outputs,
        },
    )


def cmd_predict(a: argparse.Namespace) -> None:
    from denoise.methods.registry import build_predictor
    from denoise.predict.runner import init_output, predict_units
    from denoise.provenance import STAGE_VERSIONS, atomic_write_json, read_json

    cfg, outputs, fp = _predict_setup(a)
    if a.scatter_index == 0 and a.scatter_count == 1 and not a.no_init:
        init_output(
            a.store, outputs, fp, {"stage": "predict", "method": a.method, "fingerprint": fp}
        )
    noise = read_json(a.noise_model) if a.noise_model else None
    settings = _method_settings(a.method, a.method_params, "predict --method-params")
    predictor = _foreign_predictor(a, cfg) if a.model_dir else None
    if predictor is None:
        predictor = build_predictor(
            a.method, cfg, a.seed, model_dir=a.model_dir, noise_model=noise, settings=settings
        )
        if a.model_dir:
            predictor = _model_checks(a, predictor)
    summary = predict_units(
        a.store,
        outputs,
        predictor,
        cfg,
        fp,
        scatter_index=a.scatter_index,
        scatter_count=a.scatter_count,
    )
    keep = {
        k: v
        for k, v in summary.items()
        if k not in ("computed", "skipped", "seconds", "units_per_s", "bytes_read")
    }
    atomic_write_json(
        a.sentinel,
        {
            "stage": "predict",
            "version": STAGE_VERSIONS["predict"],
            "fingerprint": fp,
            "scatter": [a.scatter_index, a.scatter_count],
            **keep,
            **({"model": _model_provenance(a)} if a.model_dir else {}),
        },
    )


def cmd_gather(a: argparse.Namespace) -> None:
    from denoise.predict.runner import finalize_output
    from denoise.provenance import STAGE_VERSIONS, atomic_write_json

    _cfg, outputs, fp = _predict_setup(a)
    summary = finalize_output(a.store, outputs, fp, a.scatter_count)
    atomic_write_json(
        a.sentinel,
        {
            "stage": "gather",
            "version": STAGE_VERSIONS["predict"],
            "fingerprint": fp,
            "method": a.method,
            "outputs": outputs,
            "stores": summary.get("outputs", {}),
            "n_units": summary.get("n_units"),
            **({"model": _model_provenance(a)} if a.model_dir else {}),
        },
    )


def cmd_apply(a: argparse.Namespace) -> None:
    """``denoise apply``: an existing model on a new image, no sheet and no training: check,
    ingest (an OME-Zarr 0.5 input is read in place), init-output, predict, gather."""
    from denoise.config import ConfigError
    from denoise.io.bmz_package import is_bmz_package
    from denoise.io.ingest import ingest
    from denoise.io.omezarr import is_ome_zarr_v05
    from denoise.io.readers import open_input
    from denoise.io.sheet_checks import model_problems
    from denoise.provenance import atomic_write_json, read_json

    out = Path(a.output_dir)
    image = open_input(a.input, a.axes or "")
    problems = model_problems(
        a.model, a.method, image.axes, image.data.shape, each_channel=a.model_each_channel
    )
    if problems:
        raise ConfigError("\n".join(f"apply: --model: {p}" for p in problems))
    out.mkdir(parents=True, exist_ok=True)
    model_dir = a.model
    if is_bmz_package(a.model):
        from denoise.export.bmz_import import import_bmz

        model_dir = str(out / "model")
        import_bmz(a.model, model_dir)
    method = read_json(Path(model_dir) / "model.json")["method"]
    store = a.input if is_ome_zarr_v05(a.input) else str(out / "raw.ome.zarr")
    ingest_cfg = _params(_ingest_config(), a.ingest_params, "apply --ingest-params")
    atomic_write_json(
        out / "ingest.json", ingest(a.input, store, axes=a.axes or "", cfg=ingest_cfg)
    )
    stage = argparse.Namespace(
        store=store,
        output_dir=str(out),
        method=method,
        model_dir=model_dir,
        model_each_channel=a.model_each_channel,
        noise_model=None,
        ingest=str(out / "ingest.json"),
        params=a.params,
        method_params=a.method_params,
        seed=a.seed,
        scatter_index=0,
        scatter_count=1,
        no_init=True,
    )
    cmd_init_output(argparse.Namespace(**vars(stage), sentinel=str(out / "init.json")))
    cmd_predict(argparse.Namespace(**vars(stage), sentinel=str(out / "part.json")))
    cmd_gather(argparse.Namespace(**vars(stage), sentinel=str(out / "predict.json")))
    print(json.dumps({"outputs": _outputs(str(out), method), **_model_provenance(stage)}, indent=2))


def cmd_import_bmz(a: argparse.Namespace) -> None:
    from denoise.export.bmz_import import import_bmz

    info = import_bmz(a.package, a.model_dir)
    print(json.dumps({"model_dir": a.model_dir, "sha256": info["sha256"]}, indent=2))


def _ingest_config() -> type:
    from denoise.settings import IngestConfig

    return IngestConfig


def cmd_evaluate(a: argparse.Namespace) -> None:
    from denoise.metrics.evaluate import evaluate, write_tables
    from denoise.metrics.next_frame import window_predictor
    from denoise.provenance import read_json

    outputs = _outputs(a.output_dir, a.method)
    noise = read_json(a.noise_model) if a.noise_model else None
    # A method that sees neighbouring frames is rerun on leave-out windows (next-frame score).
    given = {
        "predict_config": json.loads(a.params) if a.params else None,
        "method_settings": json.loads(a.method_params) if a.method_params else None,
        "seed": a.seed,
    }
    window = window_predictor(
        a.method, outputs["denoised"], a.model_dir, noise, a.model_each_channel, given
    )
    result = evaluate(
        a.store, outputs, a.ground_truth or "", a.gt_axes or "", noise_params=noise, window=window
    )
    result["ground_truth"] = {"uri": a.ground_truth, "axes": a.gt_axes}
    write_tables(result, a.json, a.tsv)


def cmd_report(a: argparse.Namespace) -> None:
    from denoise.config import ReportConfig
    from denoise.report.html import build_report

    cfg = _params(ReportConfig, a.params, "report --params")
    build_report(a.results, [d for d in a.datasets.split(",") if d], a.out, cfg)


def cmd_check_config(a: argparse.Namespace) -> None:
    import yaml

    from denoise.config import auto_choice_lines, load_workflow_config, read_dataset_sheet
    from denoise.io.sheet_checks import check_sheet_inputs

    data = yaml.safe_load(Path(a.config).read_text()) or {}
    cfg = load_workflow_config(data, where=a.config)
    rows = read_dataset_sheet(cfg.datasets, cfg.auto_method)
    check_sheet_inputs(rows, cfg.datasets)
    for line in auto_choice_lines(rows):
        print(line)
    print(f"{a.config}: OK ({len(rows)} dataset(s): {', '.join(r.name for r in rows)})")


def cmd_schema(a: argparse.Namespace) -> None:
    from denoise.config import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))


def cmd_methods(a: argparse.Namespace) -> None:
    from denoise.methods.registry import markdown_table

    print(markdown_table())


def cmd_export_bmz(a: argparse.Namespace) -> None:
    try:
        import bioimageio.core  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "export-bmz needs the optional package bioimageio.core: pip install 'denoise[bmz]'"
        ) from exc
    from denoise.export.bmz import export_bmz, read_sample, validate_bmz
    from denoise.models.store import load_model

    sample = read_sample(a.sample, load_model(a.model_dir)[1]) if a.sample else None
    out = export_bmz(a.model_dir, a.out_zip, sample=sample, validate=False)
    summary = validate_bmz(out)  # raises when validation or reproduction fails
    print(json.dumps({"package": str(out), **summary}, indent=2))


# ---------------------------------------------------------------- parser
def _method_help() -> str:
    from denoise.methods.registry import method_names

    return ", ".join(method_names())


def _common_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="Input OME-Zarr store (from ingest).")
    p.add_argument(
        "--output-dir", required=True, help="Directory for the output OME-Zarr store(s)."
    )
    p.add_argument("--method", required=True, help=f"Denoising method ({_method_help()}).")
    p.add_argument(
        "--model-dir", default=None, help="Trained model directory (methods with a train stage)."
    )
    p.add_argument(
        "--model-each-channel",
        action="store_true",
        help="Apply a single-channel model to each channel of a multichannel input.",
    )
    p.add_argument(
        "--noise-model", default=None, help="Noise-model JSON (classical methods use it)."
    )
    p.add_argument(
        "--ingest", default=None, help="Ingest sentinel JSON (its fingerprint enters ours)."
    )
    p.add_argument("--params", default=None, help="PredictConfig as JSON.")
    p.add_argument(
        "--method-params", default=None, help="The method's own settings (methods.<name>) as JSON."
    )
    p.add_argument("--seed", type=int, default=42, help="Random seed.")
    p.add_argument("--scatter-count", type=int, default=1, help="Number of predict jobs (scatter).")


def _store_args(
    p: argparse.ArgumentParser, params: str, seed: bool = True, group: bool = False
) -> None:
    p.add_argument("--store", required=not group, help="Input OME-Zarr store.")
    if group:
        p.add_argument(
            "--group-members",
            default=None,
            help="A sheet group: TSV with columns store, ingest (one row per member; "
            "instead of, or after, --store).",
        )
    p.add_argument("--ingest", default=None, help="Ingest sentinel JSON.")
    p.add_argument("--params", default=None, help=f"{params} as JSON.")
    if seed:
        p.add_argument("--seed", type=int, default=42, help="Random seed.")


def _add_ingest(sub: Any) -> None:
    p = sub.add_parser("ingest", help="Convert an input image to a chunked OME-Zarr 0.5 store.")
    p.add_argument(
        "--input", required=True, help="TIFF, PNG / PNG glob, .npy, zarr or OME-Zarr path."
    )
    p.add_argument(
        "--axes", default="", help="Axes of the input, e.g. 'tyx' (needed when the file has none)."
    )
    p.add_argument("--store", required=True, help="Output OME-Zarr store path.")
    p.add_argument("--sentinel", required=True, help="JSON summary written on success.")
    p.add_argument("--params", default=None, help="IngestConfig as JSON.")
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="Replace NaN/Inf by the median instead of failing.",
    )
    p.set_defaults(func=cmd_ingest)


def _add_noise(sub: Any) -> None:
    p = sub.add_parser(
        "noise-model", help="Estimate Poisson-Gaussian noise parameters per channel."
    )
    _store_args(p, "NoiseModelConfig")
    p.add_argument("--out", required=True, help="Output JSON.")
    p.add_argument("--plot", default=None, help="Output PNG of variance vs mean with the fit.")
    p.set_defaults(func=cmd_noise_model)

    p = sub.add_parser("fit-noise-model", help="Fit a PN2V noise model (PG, histogram, GMM).")
    p.add_argument(
        "--kind", required=True, help="poisson_gaussian, histogram, gmm or gmm_bootstrap."
    )
    _store_args(p, "NoiseModelConfig", group=True)
    p.add_argument("--calibration", default="", help="Calibration stack (histogram, gmm).")
    p.add_argument("--calibration-axes", default="", help="Axes of the calibration stack.")
    p.add_argument("--n2v-model-dir", default=None, help="Trained N2V model (gmm_bootstrap).")
    p.add_argument("--out", required=True, help="Output JSON (one model per channel).")
    p.add_argument("--plot", default=None, help="Output PNG of the model against the data.")
    p.set_defaults(func=cmd_fit_noise_model)


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="Train a method's network on the store (trained methods).")
    _store_args(p, "TrainConfig (the shared train block)", group=True)
    p.add_argument(
        "--model-dir", required=True, help="Model directory (model.json is the sentinel)."
    )
    p.add_argument("--method", default="n2v", help=f"A trained method ({_method_help()}).")
    p.add_argument(
        "--method-params", default=None, help="The method's own settings (methods.<name>) as JSON."
    )
    p.add_argument("--noise-model", default=None, help="PN2V: noise-model JSON (fit-noise-model).")
    p.add_argument("--psf", default=None, help="DecoNoising: measured PSF file (else Gaussian).")
    p.add_argument(
        "--group-store",
        action="append",
        default=[],
        help="A sheet group's further store (repeat): one model on all stores.",
    )
    p.add_argument(
        "--group-ingest",
        action="append",
        default=[],
        help="The ingest sentinel of each --group-store (same order; in the fingerprint).",
    )
    p.set_defaults(func=cmd_train)


def _add_predict(sub: Any) -> None:
    for name, text, func in (
        (
            "init-output",
            "Create the empty output store(s) before scattered prediction.",
            cmd_init_output,
        ),
        ("predict", "Predict this job's share of units into the output store(s).", cmd_predict),
        ("gather", "Check every unit, build the pyramid, validate, mark complete.", cmd_gather),
    ):
        p = sub.add_parser(name, help=text)
        _common_predict(p)
        if name == "predict":
            p.add_argument(
                "--scatter-index", type=int, default=0, help="Which job this is (0-based)."
            )
            p.add_argument(
                "--no-init", action="store_true", help="Do not create the output (init-output did)."
            )
        p.add_argument("--sentinel", required=True, help="JSON written on success.")
        p.set_defaults(func=func)


def _add_apply(sub: Any) -> None:
    p = sub.add_parser(
        "apply",
        help="Apply an existing model to a new image in one command (no sheet, no training).",
        description=(
            "Denoise IMAGE with a trained model directory (MODEL_DIR/model.json + model.pt, e.g. "
            "results/<dataset>/model of an earlier run): checks the model fits the image "
            "(method, 2D/3D, channels), ingests the image into OUTPUT_DIR/raw.ome.zarr (an "
            "OME-Zarr 0.5 input is read in place), predicts every unit and writes "
            "OUTPUT_DIR/<output>.ome.zarr (denoised, and the method's other outputs) and "
            "OUTPUT_DIR/predict.json (fingerprint, the model's path and sha256). Normalisation "
            "uses the model's training statistics; the log warns when the image's intensities "
            "lie far outside them."
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="MODEL_DIR",
        help="Trained model directory, or a BMZ package (.zip): ours (export-bmz) or a foreign N2V-type one.",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="IMAGE",
        help="TIFF, PNG / PNG glob, .npy, zarr or OME-Zarr.",
    )
    p.add_argument(
        "--axes", default="", help="Axes of the input, e.g. 'yx' (when the file has none)."
    )
    p.add_argument(
        "--output-dir", required=True, help="Directory for the output OME-Zarr store(s)."
    )
    p.add_argument(
        "--method",
        default=None,
        help="Expected method (checked against the model's; default: the model's).",
    )
    p.add_argument(
        "--model-each-channel",
        action="store_true",
        help="Consent to apply a single-channel model to each channel of a multichannel image.",
    )
    p.add_argument("--params", default=None, help="PredictConfig (tiling, batch, device) as JSON.")
    p.add_argument("--ingest-params", default=None, help="IngestConfig (chunks) as JSON.")
    p.add_argument(
        "--method-params", default=None, help="The method's own settings (methods.<name>) as JSON."
    )
    p.add_argument("--seed", type=int, default=42, help="Random seed.")
    p.set_defaults(func=cmd_apply)


def _add_evaluate_report(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="PSNR / SSIM / scale-invariant PSNR against a ground truth."
    )
    p.add_argument("--store", required=True, help="Raw input OME-Zarr store.")
    p.add_argument("--output-dir", required=True, help="Directory holding the output store(s).")
    p.add_argument("--method", required=True, help="Method (decides the output names).")
    p.add_argument("--ground-truth", default="", help="Ground-truth image (optional).")
    p.add_argument("--gt-axes", default="", help="Axes of the ground truth.")
    p.add_argument(
        "--noise-model",
        default=None,
        help="Noise-model JSON (for the no-reference residual check).",
    )
    p.add_argument(
        "--model-dir",
        default=None,
        help="Trained model directory (reruns a method that sees neighbouring frames on "
        "leave-out windows for its next-frame score).",
    )
    p.add_argument(
        "--model-each-channel",
        action="store_true",
        help="The model is a single-channel model applied to each channel.",
    )
    p.add_argument(
        "--params",
        default=None,
        help="PredictConfig JSON as given to predict (default: recorded in the output store).",
    )
    p.add_argument(
        "--method-params",
        default=None,
        help="Method settings JSON as given to predict (default: recorded in the output store).",
    )
    p.add_argument("--seed", type=int, default=None, help="Seed as given to predict.")
    p.add_argument("--json", required=True, help="Metrics JSON.")
    p.add_argument("--tsv", required=True, help="Metrics TSV.")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="Build the self-contained HTML report.")
    p.add_argument("--results", required=True, help="Results directory.")
    p.add_argument("--datasets", required=True, help="Comma-separated dataset names.")
    p.add_argument("--out", required=True, help="Output HTML file.")
    p.add_argument("--params", default=None, help="ReportConfig as JSON.")
    p.set_defaults(func=cmd_report)


def _add_tools(sub: Any) -> None:
    p = sub.add_parser(
        "check-config", help="Validate a config and its dataset sheet (inputs, axes, methods)."
    )
    p.add_argument("config", help="config.yaml path.")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("schema", help="Print the JSON schema of the workflow config.")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("methods", help="List the registered methods (a Markdown table).")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser(
        "export-bmz", help="Export an N2V/N2V2 model as a validated BioImage Model Zoo package."
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Trained model directory.")
    p.add_argument("out_zip", metavar="OUT_ZIP", help="Package (.zip) to write.")
    p.add_argument(
        "--sample",
        default=None,
        help="Image or OME-Zarr store for the test tensors (unless the model records its store).",
    )
    p.set_defaults(func=cmd_export_bmz)

    p = sub.add_parser(
        "import-bmz",
        help="A BMZ package (ours from export-bmz, or a foreign N2V-type one) into a model directory (model.pt + model.json).",
    )
    p.add_argument(
        "package",
        metavar="PACKAGE",
        help="BMZ package (.zip): ours (export-bmz) or a foreign N2V-type one (README, Model export).",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="Model directory to write.")
    p.set_defaults(func=cmd_import_bmz)


def build_parser() -> argparse.ArgumentParser:
    """The ``denoise`` argument parser."""
    ap = argparse.ArgumentParser(prog="denoise", description=__doc__.split("\n")[0])
    ap.add_argument("--version", action="version", version=f"denoise {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in (
        _add_ingest,
        _add_noise,
        _add_train,
        _add_predict,
        _add_apply,
        _add_evaluate_report,
        _add_tools,
    ):
        add(sub)
    return ap


#: Arguments naming what each stage writes; checked for writability before any work starts.
_OUTPUT_ARGS = {
    "ingest": ("store", "sentinel"),
    "noise-model": ("out", "plot"),
    "train": ("model_dir",),
    "init-output": ("output_dir", "sentinel"),
    "predict": ("output_dir", "sentinel"),
    "gather": ("output_dir", "sentinel"),
    "apply": ("output_dir",),
    "import-bmz": ("model_dir",),
    "evaluate": ("json", "tsv"),
    "report": ("out",),
}

_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space and rerun (finished results and checkpoints are kept)",
    errno.EDQUOT: "the disk quota is exceeded: free space and rerun (finished results and checkpoints are kept)",
    errno.EROFS: "the file system is read-only: make it writable or choose another results directory",
    errno.EACCES: "permission denied: fix the permissions or choose another results directory",
}


def _output_paths(a: argparse.Namespace) -> list[Path]:
    paths = [Path(v) for k in _OUTPUT_ARGS.get(a.command, ()) if (v := getattr(a, k, None))]
    if a.command == "ingest" and Path(a.store).resolve() == Path(a.input).resolve():
        paths = paths[1:]  # an OME-Zarr input used in place is not written (only annotated)
    return paths


def _check_writable(a: argparse.Namespace) -> None:
    """Fail before any work when a stage could not write its outputs (read-only, no permission)."""
    for path in _output_paths(a):
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe.is_file():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            readonly = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
            code = errno.EROFS if readonly else errno.EACCES
            raise OSError(code, os.strerror(code), str(probe))


def _describe_os_error(exc: OSError, a: argparse.Namespace) -> str:
    """The OS error with the path it concerns (or the stage's outputs) and what to do."""
    hint = _OS_HINTS.get(exc.errno or 0)
    if hint is None:
        return str(exc)
    where = exc.filename or ", ".join(str(p) for p in _output_paths(a)) or "?"
    return f"{exc.strerror} ({where}): {hint}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (errors print one clear message, exit 1/2)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from denoise.config import ConfigError
    from denoise.io.axes import AxesError
    from denoise.io.readers import InputError

    try:
        _check_writable(args)
        args.func(args)
    except (
        ConfigError,
        InputError,
        AxesError,
        OSError,
        ValueError,
        ImportError,
        RuntimeError,
    ) as exc:
        if args.verbose:
            raise
        msg = _describe_os_error(exc, args) if isinstance(exc, OSError) else str(exc)
        print(f"denoise {args.command}: error: {msg}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
