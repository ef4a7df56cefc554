"""Foreign N2V-type BMZ packages as a model (issue 20): spec reading, tiled = by hand, refusals.

Two kinds of package: the committed CAREamics 0.3.5 export (``tests/data/careamics_n2v``, see
its README: fixed normalisation, fixed input size, TorchScript + state dict from the
``careamics`` library) and tiny packages generated here with bioimageio.spec (per-sample
``zero_mean_unit_variance`` or ``scale_range`` in, ``scale_linear`` out, TorchScript or a
state dict whose architecture is a file in the package).  Each must give, through
``denoise apply`` (tiles much smaller than the image), the package's own network run once on
the whole image with the spec's normalisation done by hand, to 1e-5 of the data range.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from denoise.cli.main import main as cli
from denoise.io.bmz_spec import read_foreign_spec
from denoise.io.sheet_checks import model_problems

DATA = Path(__file__).resolve().parents[1] / "data" / "careamics_n2v"
CAREAMICS = DATA / "careamics_n2v.zip"
CAREAMICS_PURE = DATA / "careamics_n2v_pure.zip"
FISH = Path(__file__).resolve().parents[2] / ".test" / "data" / "fish_noisy.tif"
#: Small tiles (halo included) so the image is cut into many of them; one torch thread.
PARAMS = ["--params", '{"tile": 64, "threads": 1}']

ARCH = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """Two-level conv net (max-pool, nearest upsampling, skip): lattice step 2; 2D or 3D."""

    def __init__(self, features: int = 4, ndim: int = 2):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        self.nd = ndim
        self.a = conv(1, features, 3, padding=1)
        self.b = conv(features, features, 3, padding=1)
        self.c = conv(2 * features, 1, 1)

    def forward(self, x):
        s = torch.relu(self.a(x))
        if self.nd == 2:
            p = nn.functional.max_pool2d(s, 2)
        else:
            p = nn.functional.max_pool3d(s, 2)
        d = torch.relu(self.b(p))
        u = nn.functional.interpolate(d, scale_factor=2.0, mode="nearest")
        return self.c(torch.cat([u, s], 1))
'''


def _array(store: Path) -> np.ndarray:
    from denoise.io import omezarr

    return omezarr.open_image(store)[0][:]


def _program(package: Path) -> torch.jit.ScriptModule:
    spec = read_foreign_spec(package)
    with zipfile.ZipFile(package) as zf:
        return torch.jit.load(io.BytesIO(zf.read(spec.raw_weights["torchscript"]["source"])))


def by_hand(net: torch.nn.Module, x: np.ndarray, halo: int, step: int, pre, post) -> np.ndarray:
    """``post(net(pre(x)))`` on the whole image (2D or 3D), reflect-padded by ``halo`` (+ to the step)."""
    xn = pre(x.astype(np.float32)).astype(np.float32)
    xp = np.pad(xn, [(halo, halo + (-n) % step) for n in x.shape], mode="reflect")
    with torch.no_grad():
        y = net(torch.from_numpy(xp)[None, None])[0, 0].numpy()
    return post(y[tuple(slice(halo, halo + n) for n in x.shape)])


def _apply(package: Path, image: Path, out: Path, axes: str = "yx", *extra: str) -> dict:
    args = ["apply", "--model", str(package), "--input", str(image), "--axes", axes]
    assert cli([*args, "--output-dir", str(out), *PARAMS, *extra]) == 0
    return json.loads((out / "model" / "model.json").read_text())


# ------------------------------------------------------------------- the CAREamics package
def test_careamics_spec():
    spec = read_foreign_spec(CAREAMICS)
    assert (spec.in_axes, spec.out_axes, spec.ndim) == ("bcyx", "bcyx", 2)
    assert spec.step == 0  # CAREamics states the export example's fixed size (96 x 96)
    assert spec.weights == ("torchscript", "pytorch_state_dict")
    assert [n for n, _ in spec.pre] == ["ensure_dtype", "fixed_zero_mean_unit_variance", "ensure_dtype"]
    assert [n for n, _ in spec.post] == ["fixed_zero_mean_unit_variance", "ensure_dtype"]
    assert model_problems(CAREAMICS, "n2v", "yx", (96, 96)) == []


def test_careamics_package_tiled_equals_by_hand(tmp_path):
    meta = _apply(CAREAMICS, FISH, tmp_path / "out")
    got = _array(tmp_path / "out" / "denoised.ome.zarr")
    assert meta["multiple"] == 4 and meta["bmz_foreign"]["weights"] == "torchscript"  # 2**depth
    assert meta["receptive_field"] == meta["bmz_foreign"]["measured_receptive_field"] == 26
    pre = dict(read_foreign_spec(CAREAMICS).pre)["fixed_zero_mean_unit_variance"]
    post = dict(read_foreign_spec(CAREAMICS).post)["fixed_zero_mean_unit_variance"]
    ref = by_hand(
        _program(CAREAMICS),
        tifffile.imread(FISH),
        meta["halo"],
        meta["multiple"],
        lambda x: (x - np.float32(pre["mean"][0])) / np.float32(pre["std"][0] + 1e-6),
        lambda y: (y - np.float32(post["mean"][0])) / np.float32(post["std"][0] + 1e-6),
    )
    assert got.shape == ref.shape == (96, 96)
    assert np.abs(got - ref).max() <= 1e-5 * np.ptp(ref)
    # CAREamics' own prediction (the package's test output, whole 96x96 image, zero padding
    # inside the network): equal wherever the borders are out of reach
    with zipfile.ZipFile(CAREAMICS) as zf:
        theirs = np.load(io.BytesIO(zf.read("outputs.npy"))).squeeze()
        inputs = np.load(io.BytesIO(zf.read("inputs.npy"))).squeeze()
    assert np.array_equal(inputs, tifffile.imread(FISH).astype(np.float32))
    r = meta["receptive_field"]
    assert np.abs(got - theirs)[r:-r, r:-r].max() <= 1e-5 * np.ptp(theirs)
    info = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert info["model"]["bmz_package"]["path"] == str(CAREAMICS)
    from denoise.provenance import file_sha256

    assert info["model"]["bmz_package"]["sha256"] == file_sha256(CAREAMICS)


def test_careamics_state_dict_only_is_refused():
    pytest.importorskip("bioimageio.core")
    if __import__("importlib").util.find_spec("careamics") is not None:
        pytest.skip("careamics is installed here: its architecture can be built")
    problems = model_problems(CAREAMICS_PURE, "n2v", "yx", (96, 96))
    assert len(problems) == 1 and str(CAREAMICS_PURE) in problems[0]
    assert "only weights are pytorch_state_dict" in problems[0]
    assert "module 'careamics.models.unet', which is not installed" in problems[0]


# ------------------------------------------------------------------- generated packages
def _build(work: Path, weights: str, pre: str, ndim: int = 2) -> Path:
    """A tiny foreign 0.5 package written with bioimageio.spec; returns the .zip."""
    import importlib.util

    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bmz

    work.mkdir(parents=True)
    (work / "tiny_arch.py").write_text(ARCH)
    mod_spec = importlib.util.spec_from_file_location("tiny_arch", work / "tiny_arch.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    torch.manual_seed(3)
    net = mod.TinyNet(features=4, ndim=ndim).eval()
    torch.save(net.state_dict(), work / "weights.pt")
    torch.jit.script(net).save(str(work / "weights_ts.pt"))
    x = np.random.default_rng(0).normal(100, 10, (1, 1, *(16,) * ndim)).astype(np.float32)
    np.save(work / "in.npy", x)
    np.save(work / "out.npy", x)  # test tensors are not used here
    (work / "README.md").write_text("# tiny foreign test package\n")
    tv = bmz.Version(torch.__version__.split("+")[0])
    w = (
        {"torchscript": bmz.TorchscriptWeightsDescr(source=work / "weights_ts.pt", pytorch_version=tv)}
        if weights == "torchscript"
        else {
            "pytorch_state_dict": bmz.PytorchStateDictWeightsDescr(
                source=work / "weights.pt",
                pytorch_version=tv,
                architecture=bmz.ArchitectureFromFileDescr(
                    source=work / "tiny_arch.py", callable=bmz.Identifier("TinyNet"), kwargs={"features": 4, "ndim": ndim}
                ),
            )
        }
    )
    steps = {
        "zmuv": bmz.ZeroMeanUnitVarianceDescr(
            kwargs=bmz.ZeroMeanUnitVarianceKwargs(axes=[bmz.AxisId(a) for a in "zyx"[3 - ndim :]])
        ),
        "range": bmz.ScaleRangeDescr(
            kwargs=bmz.ScaleRangeKwargs(
                axes=[bmz.AxisId(a) for a in "zyx"[3 - ndim :]], min_percentile=1, max_percentile=99.5
            )
        ),
    }

    def axes(kind: str) -> list:
        if kind == "in":
            size = bmz.ParameterizedSize(min=8, step=2)
            sp = [bmz.SpaceInputAxis(id=bmz.AxisId(a), size=size) for a in "zyx"[3 - ndim :]]
        else:
            sp = [
                bmz.SpaceOutputAxis(
                    id=bmz.AxisId(a), size=bmz.SizeReference(tensor_id=bmz.TensorId("raw"), axis_id=bmz.AxisId(a))
                )
                for a in "zyx"[3 - ndim :]
            ]
        return [bmz.BatchAxis(), bmz.ChannelAxis(channel_names=[bmz.Identifier("c0")]), *sp]

    descr = bmz.ModelDescr(
        name="tiny foreign n2v",
        description="a tiny N2V-type test package, not ours",
        authors=[bmz.Author(name="denoise tests")],
        cite=[bmz.CiteEntry(text="Krull et al. 2019", doi=bmz.Doi("10.1109/CVPR.2019.00223"))],
        license=bmz.LicenseId("MIT"),
        documentation=bmz.FileDescr(source=work / "README.md"),
        inputs=[
            bmz.InputTensorDescr(
                id=bmz.TensorId("raw"), axes=axes("in"), test_tensor=bmz.FileDescr(source=work / "in.npy"),
                preprocessing=[steps[pre]],
            )
        ],
        outputs=[
            bmz.OutputTensorDescr(
                id=bmz.TensorId("denoised"), axes=axes("out"), test_tensor=bmz.FileDescr(source=work / "out.npy"),
                postprocessing=[bmz.ScaleLinearDescr(kwargs=bmz.ScaleLinearKwargs(gain=30.0, offset=5.0))],
            )
        ],
        weights=bmz.WeightsDescr(**w),
    )
    return save_bioimageio_package(descr, output_path=work.parent / f"{work.name}.zip")


def _whole(x: np.ndarray, pre: str) -> np.ndarray:
    """The spec's per-sample preprocessing with statistics of the whole image, by hand."""
    x = x.astype(np.float32)
    if pre == "zmuv":
        return (x - np.float32(x.mean(dtype=np.float64))) / np.float32(x.std(dtype=np.float64) + 1e-6)
    lo, hi = np.percentile(x, [1, 99.5])
    return (x - np.float32(lo)) / np.float32(hi - lo + 1e-6)


@pytest.mark.parametrize(("weights", "pre"), [("torchscript", "zmuv"), ("pytorch_state_dict", "range")])
def test_generated_package_tiled_equals_by_hand(tmp_path, weights, pre):
    pytest.importorskip("bioimageio.core")
    pkg = _build(tmp_path / "pkg", weights, pre)
    image = (np.random.default_rng(1).poisson(40, (120, 100)) * 3 + 7).astype(np.uint16)
    tifffile.imwrite(tmp_path / "img.tif", image)
    meta = _apply(pkg, tmp_path / "img.tif", tmp_path / "out")
    assert meta["multiple"] == 2 and meta["bmz_foreign"]["weights"] == weights
    got = _array(tmp_path / "out" / "denoised.ome.zarr")
    net = torch.jit.load(str(tmp_path / "pkg" / "weights_ts.pt"))
    ref = by_hand(net, image, meta["halo"], 2, lambda x: _whole(x, pre), lambda y: y * np.float32(30) + np.float32(5))
    assert np.abs(got - ref).max() <= 1e-5 * np.ptp(ref)
    if pre == "zmuv":  # bioimageio.core's own prediction of the whole image agrees inside
        from bioimageio.core import predict

        theirs = predict(model=str(pkg), inputs=image[None, None].astype(np.float32))
        theirs = np.asarray(theirs.members["denoised"].data).squeeze()
        r = meta["receptive_field"]
        assert np.abs(got - theirs)[r:-r, r:-r].max() <= 1e-5 * np.ptp(ref)


def test_3d_package_on_a_stack(tmp_path):
    """A 3D (b c z y x) package on a zyx stack: the whole volume is the sample."""
    pytest.importorskip("bioimageio.core")
    pkg = _build(tmp_path / "pkg", "torchscript", "zmuv", ndim=3)
    stack = Path(__file__).resolve().parents[2] / ".test" / "data" / "nuclei3d.tif"
    assert model_problems(pkg, "n2v", "yx", (40, 40))[0].endswith("give the z axis in the 'axes' column")
    meta = _apply(pkg, stack, tmp_path / "out", "zyx", "--params", '{"tile": 16, "tile_z": 8, "threads": 1}')
    assert (meta["ndim"], meta["multiple"]) == (3, 2)
    got = _array(tmp_path / "out" / "denoised.ome.zarr")
    net = torch.jit.load(str(tmp_path / "pkg" / "weights_ts.pt"))
    ref = by_hand(
        net, tifffile.imread(stack), meta["halo"], 2, lambda v: _whole(v, "zmuv"), lambda y: y * np.float32(30) + np.float32(5)
    )
    assert got.shape == ref.shape == (12, 40, 40)
    assert np.abs(got - ref).max() <= 1e-5 * np.ptp(ref)


def test_per_sample_statistics_per_channel(tmp_path):
    """With consent, each channel of a 2-channel input gets its own whole-channel statistics."""
    pytest.importorskip("bioimageio.core")
    pkg = _build(tmp_path / "pkg", "torchscript", "zmuv")
    rng = np.random.default_rng(2)
    a = rng.poisson(40, (64, 72)).astype(np.float32)
    b = rng.poisson(400, (64, 72)).astype(np.float32) * 5
    tifffile.imwrite(tmp_path / "two.tif", np.stack([a, b]))
    args = ["apply", "--model", str(pkg), "--input", str(tmp_path / "two.tif"), "--axes", "cyx", *PARAMS]
    assert cli([*args, "--output-dir", str(tmp_path / "refused")]) == 2
    meta = _apply(pkg, tmp_path / "two.tif", tmp_path / "out", "cyx", "--model-each-channel")
    got = _array(tmp_path / "out" / "denoised.ome.zarr")
    net = torch.jit.load(str(tmp_path / "pkg" / "weights_ts.pt"))
    for c, x in enumerate((a, b)):
        ref = by_hand(net, x, meta["halo"], 2, lambda v: _whole(v, "zmuv"), lambda y: y * np.float32(30) + np.float32(5))
        assert np.abs(got[c] - ref).max() <= 1e-5 * np.ptp(ref)


# ------------------------------------------------------------------- refusals
def _edited(tmp_path: Path, name: str, edit) -> Path:
    """The CAREamics package with its rdf.yaml changed by ``edit(rdf)``."""
    out = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(CAREAMICS) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "rdf.yaml":
                rdf = yaml.safe_load(data)
                edit(rdf)
                data = yaml.safe_dump(rdf).encode()
            dst.writestr(item, data)
    return out


def _onnx_only(rdf: dict) -> None:
    rdf["weights"] = {"onnx": {"source": "weights.onnx", "opset_version": 15}}


def _time_axis(rdf: dict) -> None:
    rdf["inputs"][0]["axes"].insert(2, {"type": "time", "id": "t", "size": 5})


def _two_channels(rdf: dict) -> None:
    rdf["inputs"][0]["axes"][1]["channel_names"] = ["a", "b"]


def _mean_variance(rdf: dict) -> None:
    rdf["outputs"][0]["postprocessing"] = [
        {"id": "scale_mean_variance", "kwargs": {"reference_tensor": "input", "axes": ["y", "x"]}}
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_onnx_only, "no usable weights format (it has: onnx); supported: torchscript, pytorch_state_dict"),
        (_time_axis, "axis 't' of type 'time' is not N2V-type"),
        (_two_channels, "the network takes 2 channel(s) jointly"),
        (_mean_variance, "postprocessing step 'scale_mean_variance with reference_tensor' is not supported"),
    ],
)
def test_unsupported_package_is_refused(tmp_path, edit, message):
    pkg = _edited(tmp_path, edit.__name__, edit)
    problems = model_problems(pkg, "n2v", "yx", (96, 96))
    assert len(problems) == 1 and f"BMZ package {pkg}" in problems[0] and message in problems[0]


def test_not_shift_equivariant_is_refused(tmp_path, capsys):
    """A network that uses the statistics of its whole input (e.g. batch norm in training mode)
    cannot be tiled exactly: the import says so."""
    pkg = tmp_path / "global.zip"
    shutil.copy(CAREAMICS, pkg)

    class Global(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x - x.mean()

    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(Global()), buf)
    with zipfile.ZipFile(CAREAMICS) as src, zipfile.ZipFile(pkg, "w") as dst:
        for item in src.namelist():
            dst.writestr(item, buf.getvalue() if item == "weights_torchscript.pt" else src.read(item))
    args = ["apply", "--model", str(pkg), "--input", str(FISH), "--axes", "yx"]
    assert cli([*args, "--output-dir", str(tmp_path / "out"), *PARAMS]) == 1
    err = capsys.readouterr().err
    assert f"BMZ package {pkg}: " in err and "grows with the tile" in err
    assert not (tmp_path / "out" / "denoised.ome.zarr").exists()


# ------------------------------------------------------------------- the sheet's model column
@pytest.mark.slow  # a whole workflow run (~2 min); `pytest -m slow` runs it
def test_foreign_package_as_sheet_model(tmp_path):
    """A sheet row naming the CAREamics package: import_bmz instead of train, the output equals
    the by-hand whole-image reference, and the outputs name the package and its checksum."""
    from denoise.provenance import file_sha256
    from tests.workflow.test_workflow import _sm, _workdir

    header = "name\turi\taxes\tmethod\tmodel\n"
    wd = _workdir(tmp_path, {"predict": {"threads": 1}}, sheet=header + f"fish\t.test/data/fish_noisy.tif\tyx\t\t{CAREAMICS}\n")
    planned = _sm(wd, "-n", "results/fish/predict.json").stdout
    assert "rule import_bmz" in planned and "rule train" not in planned
    _sm(wd, "results/fish/predict.json")
    meta = json.loads((wd / "results" / "fish" / "bmz_model" / "model.json").read_text())
    got = _array(wd / "results" / "fish" / "denoised.ome.zarr")
    pre = dict(read_foreign_spec(CAREAMICS).pre)["fixed_zero_mean_unit_variance"]
    post = dict(read_foreign_spec(CAREAMICS).post)["fixed_zero_mean_unit_variance"]
    ref = by_hand(
        _program(CAREAMICS), tifffile.imread(FISH), meta["halo"], meta["multiple"],
        lambda x: (x - np.float32(pre["mean"][0])) / np.float32(pre["std"][0] + 1e-6),
        lambda y: (y - np.float32(post["mean"][0])) / np.float32(post["std"][0] + 1e-6),
    )
    assert np.abs(got - ref).max() <= 1e-5 * np.ptp(ref)
    info = json.loads((wd / "results" / "fish" / "predict.json").read_text())
    assert info["model"]["bmz_package"] == {"path": str(CAREAMICS), "sha256": file_sha256(CAREAMICS)}


def test_unusable_foreign_package_in_sheet_stops_before_any_job(tmp_path):
    """Sheet rows naming foreign packages: an unusable one stops the run before any job,
    naming the row and the key; a usable one is not named."""
    from tests.workflow.test_workflow import _sm, _workdir

    header = "name\turi\taxes\tmethod\tmodel\n"
    bad_pkg = _edited(tmp_path, "onnx_only", _onnx_only)
    sheet = (
        header
        + f"pure\t.test/data/fish_noisy.tif\tyx\tn2v\t{CAREAMICS_PURE}\n"
        + f"onnx\t.test/data/fish_noisy.tif\tyx\tn2v\t{bad_pkg}\n"
        + f"fine\t.test/data/fish_noisy.tif\tyx\tn2v\t{CAREAMICS}\n"
    )
    bad = _workdir(tmp_path / "bad", sheet=sheet)
    proc = _sm(bad, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and not (bad / "results").exists()
    if __import__("importlib").util.find_spec("careamics") is None:
        assert "row 1 (pure): key 'model'" in out and "careamics.models.unet" in out
    assert "row 2 (onnx): key 'model'" in out and "no usable weights format" in out
    assert "row 3 (fine)" not in out


def _as_v04(rdf: dict) -> None:
    """The CAREamics rdf.yaml written in model format 0.4 (same weights, same normalisation)."""
    pre = rdf["inputs"][0]["preprocessing"][1]["kwargs"]
    post = rdf["outputs"][0]["postprocessing"][0]["kwargs"]
    rdf["format_version"] = "0.4.10"
    rdf["inputs"] = [{
        "name": "input", "axes": "bcyx", "data_type": "float32",
        "shape": {"min": [1, 1, 8, 8], "step": [0, 0, 4, 4]},
        "preprocessing": [{"name": "zero_mean_unit_variance", "kwargs": {
            "mode": "fixed", "axes": "yx", "mean": pre["mean"], "std": pre["std"]}}],
    }]
    rdf["outputs"] = [{
        "name": "prediction", "axes": "bcyx", "data_type": "float32", "halo": [0, 0, 8, 8],
        "shape": {"reference_tensor": "input", "scale": [1, 1, 1, 1], "offset": [0, 0, 0, 0]},
        "postprocessing": [{"name": "zero_mean_unit_variance", "kwargs": {
            "mode": "fixed", "axes": "yx", "mean": post["mean"], "std": post["std"]}}],
    }]
    rdf["weights"] = {"torchscript": rdf["weights"]["torchscript"]}


def test_model_format_04(tmp_path):
    """The same network described in model format 0.4 gives the same output as the 0.5 package."""
    pkg = _edited(tmp_path, "v04", _as_v04)
    spec = read_foreign_spec(pkg)
    assert (spec.in_axes, spec.step, spec.min_size, spec.halo) == ("bcyx", 4, (8, 8), 8)
    assert [n for n, _ in spec.pre] == [n for n, _ in spec.post] == ["fixed_zero_mean_unit_variance"]
    _apply(pkg, FISH, tmp_path / "v04")
    _apply(CAREAMICS, FISH, tmp_path / "v05")
    a, b = (_array(tmp_path / v / "denoised.ome.zarr") for v in ("v04", "v05"))
    assert np.array_equal(a, b)


def test_whole_input_statistics_block_by_block():
    """Per-sample statistics from blocks equal those of the whole array, after earlier steps."""
    from denoise.export import bmz_ops

    x = np.random.default_rng(5).gamma(2.0, 30.0, (7, 33, 20)).astype(np.float32)
    y = x * np.float32(2) + np.float32(1)
    steps = [("ensure_dtype", {"dtype": "float32"}), ("scale_linear", {"gain": 2.0, "offset": 1.0})]
    zmuv = bmz_ops.resolve([*steps, ("zero_mean_unit_variance", {})], lambda: iter(np.array_split(x, 3)))
    assert zmuv[0] == ("linear", (2.0, 1.0)) and zmuv[1][0] == "affine"
    np.testing.assert_allclose(zmuv[1][1], (y.mean(dtype=np.float64), y.std(dtype=np.float64) + 1e-6), rtol=1e-12)
    rng = bmz_ops.resolve(
        [*steps, ("scale_range", {"min_percentile": 2, "max_percentile": 98, "eps": 0.5})],
        lambda: iter(np.array_split(x, 4, axis=1)),
    )
    lo, hi = np.percentile(y, [2, 98])
    assert rng[1] == ("affine", (float(lo), float(hi) - float(lo) + 0.5))
    assert not bmz_ops.needs_data(steps) and bmz_ops.needs_data([("scale_range", {})])
    with pytest.raises(ValueError, match="needs the input's statistics"):
        bmz_ops.resolve([("zero_mean_unit_variance", {})])


def test_axes_orders_round_trip():
    """Tiles (N, 1, Y, X) reach a package's own axis order and come back unchanged."""
    from denoise.export.foreign_net import to_axes

    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    assert to_axes(x, "bcyx", "byxc").shape == (2, 5, 6, 1)
    assert torch.equal(to_axes(to_axes(x, "bcyx", "byxc"), "byxc", "bcyx"), x)
    assert torch.equal(to_axes(to_axes(x, "bcyx", "xyb"), "xyb", "bcyx"), x)
    one = x[:1]
    assert to_axes(one, "bcyx", "yx").shape == (5, 6)
    assert torch.equal(to_axes(to_axes(one, "bcyx", "yx"), "yx", "bcyx"), one)


def _xy_order(rdf: dict) -> None:
    for t in (rdf["inputs"][0], rdf["outputs"][0]):
        t["axes"][2], t["axes"][3] = t["axes"][3], t["axes"][2]


def test_spatial_axes_in_another_order(tmp_path):
    """A package stating ``b c x y`` gets its tiles transposed: the program sees x first."""
    pkg = _edited(tmp_path, "xy", _xy_order)
    assert read_foreign_spec(pkg).in_axes == "bcxy"
    meta = _apply(pkg, FISH, tmp_path / "out")
    got = _array(tmp_path / "out" / "denoised.ome.zarr")
    pre = dict(read_foreign_spec(pkg).pre)["fixed_zero_mean_unit_variance"]
    post = dict(read_foreign_spec(pkg).post)["fixed_zero_mean_unit_variance"]
    ref = by_hand(
        _program(pkg), tifffile.imread(FISH).T, meta["halo"], meta["multiple"],
        lambda x: (x - np.float32(pre["mean"][0])) / np.float32(pre["std"][0] + 1e-6),
        lambda y: (y - np.float32(post["mean"][0])) / np.float32(post["std"][0] + 1e-6),
    ).T
    assert np.abs(got - ref).max() <= 1e-5 * np.ptp(ref)
