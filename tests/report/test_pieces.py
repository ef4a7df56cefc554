"""The report's building blocks: grouping and ranking rows, views (kymograph, XZ aspect,
residual), number formatting, wall times from benchmark tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from denoise.io import omezarr
from denoise.report import views
from denoise.report.fmt import num, seconds
from denoise.report.images import display_range, mark_box, symmetric_range, to_rgb
from denoise.report.rows import Row, group_by_input, load_row, ranking
from denoise.report.tables import SCORE_NOTES, ranking_block


def _row(name: str, uri: str, nf: float | None = None, psnr: float | None = None) -> Row:
    metrics: dict = {"no_reference": {"denoised": {"next_frame_mse": nf}}}
    if psnr is not None:
        metrics["summary"] = {"denoised": {"psnr": psnr}}
    return Row(
        name=name,
        dir=Path(name),
        ingest={"source": {"uri": uri}},
        predict={"method": name.split("_")[-1]},
        metrics=metrics,
    )


def test_group_by_input_keeps_sheet_order():
    rows = [
        _row("fish_n2v", "fish.tif"),
        _row("tl_n2v", "tl_*.png"),
        _row("fish_gauss", "fish.tif"),
        _row("nuc_gauss", "nuc.tif"),
    ]
    groups = group_by_input(rows)
    assert list(groups) == ["fish.tif", "tl_*.png", "nuc.tif"]
    assert [r.name for r in groups["fish.tif"]] == ["fish_n2v", "fish_gauss"]
    assert [len(g) for g in groups.values()] == [2, 1, 1]


def test_ranking_next_frame_lowest_first_then_psnr_then_none():
    rows = [_row("a_n2v", "x", nf=52.5, psnr=20.0), _row("b_gauss", "x", nf=49.25, psnr=19.0)]
    key, ranked = ranking(rows)
    assert key == "next_frame_mse"
    assert [(r.name, v) for r, v in ranked] == [("b_gauss", 49.25), ("a_n2v", 52.5)]
    # Single frames: no next-frame score, the ground truth decides (highest PSNR first).
    rows = [_row("a_n2v", "x", psnr=20.0), _row("b_gauss", "x", psnr=25.5)]
    key, ranked = ranking(rows)
    assert key == "psnr" and [r.name for r, _ in ranked] == ["b_gauss", "a_n2v"]
    # Neither for every row: no ranking, and the block says why.
    rows = [_row("a_n2v", "x", nf=3.0), _row("b_gauss", "x")]
    assert ranking(rows) == ("", [])
    block = ranking_block(rows)
    assert SCORE_NOTES[""].split(":")[0] in block and "<td>–</td>" in block


def test_ranking_block_bolds_the_best_and_states_validity():
    block = ranking_block([_row("a_n2v", "x", nf=52.5), _row("b_gauss", "x", nf=49.25)])
    assert block.index("<b>b_gauss</b>") < block.index("a_n2v")
    assert "49.2" in block and "52.5" in block
    assert "lower is better" in block and "static scene" in block


def _moving_spot(nt: int = 6, ny: int = 20, nx: int = 30, y0: int = 9, x0: int = 5) -> np.ndarray:
    yy, xx = np.mgrid[:ny, :nx]
    stack = np.zeros((nt, ny, nx), np.float32)
    for t in range(nt):
        stack[t] = 100 * np.exp(-((yy - y0) ** 2 + (xx - (x0 + 3 * t)) ** 2) / 2.0) + 1
    return stack


def test_kymograph_follows_a_moving_spot(tmp_path):
    stack = _moving_spot()
    arr = omezarr.create_image(tmp_path / "s.ome.zarr", stack.shape, "float32", "tyx", (2, 20, 30))
    arr[:] = stack
    y, x = views.bright_point(stack[0])
    assert (y, x) == (9, 5)
    ky = views.kymograph(arr, "tyx", {}, y, slice(2, 28))
    assert ky.shape == (6, 26)
    # One row per frame; the spot moves 3 px per frame (columns offset by the window start).
    assert [int(np.argmax(r)) + 2 for r in ky] == [5, 8, 11, 14, 17, 20]
    np.testing.assert_array_equal(ky[3], stack[3, 9, 2:28])
    assert views.frame_indices(6) == [0, 3, 5] and views.frame_indices(1) == [0]


def test_xz_section_and_aspect_from_pixel_sizes(tmp_path):
    vol = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    path = tmp_path / "v.ome.zarr"
    arr = omezarr.create_image(
        path, vol.shape, "float32", "zyx", vol.shape, scale={"z": 2.0, "y": 0.5, "x": 0.5}
    )
    arr[:] = vol
    sizes = views.pixel_sizes(path)
    assert sizes == {"z": 2.0, "y": 0.5, "x": 0.5}
    assert views.xz_aspect(sizes) == pytest.approx(4.0)
    sec = views.xz_section(arr, "zyx", {}, 3, slice(1, 7))
    np.testing.assert_array_equal(sec, vol[:, 3, 1:7])
    # 6 x pixels at 2 CSS px each; 4 z steps of 2 µm are 4 × 4 x-pixels tall.
    assert views.xz_display_size(4, 6, sizes, 2.0) == (12, 32)
    assert views.xz_display_size(4, 6, {}, 2.0) == (12, 8)  # no metadata: square voxels


def test_residual_map_and_its_symmetric_range():
    rng = np.random.default_rng(0)
    clean = np.full((32, 32), 50.0, np.float32)
    noisy = clean + rng.normal(0, 4, clean.shape).astype(np.float32)
    res = views.residual(noisy, clean)
    np.testing.assert_allclose(res, noisy - clean)
    lo, hi = symmetric_range(res)
    assert lo == -hi and 10 < hi < 14  # ±3 SD of σ = 4 noise
    rgb = to_rgb(res, (lo, hi), "RdBu_r")
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.uint8
    zero = to_rgb(np.zeros((1, 1)), (lo, hi), "RdBu_r")[0, 0]
    assert np.ptp(zero.astype(int)) < 10  # zero residual is the colormap's neutral middle
    with pytest.raises(ValueError):
        views.residual(noisy, clean[:16])


def test_display_range_and_marks():
    img = np.arange(1000, dtype=np.float32).reshape(10, 100)
    lo, hi = display_range(img)
    assert lo == pytest.approx(4.995) and hi == pytest.approx(996.003)
    assert display_range(np.full((3, 3), 7.0)) == (7.0, 8.0)
    grey = np.zeros((10, 10, 3), np.uint8)
    boxed = mark_box(grey, (slice(2, 6), slice(3, 8)), (255, 0, 0))
    assert boxed[2, 3:8, 0].all() and boxed[5, 3:8, 0].all() and boxed[2:6, 7, 0].all()
    assert not boxed[3:5, 4:7].any() and not boxed[0].any()


def test_numbers_rounded_to_meaning():
    assert num(25.5934, "db") == "25.59" and num(0.76712, "ssim") == "0.767"
    assert num(8.271, "gain") == "+8.27" and num(None) == "–" and num(float("nan")) == "–"
    assert num(118.234) == "118" and num(1427.4) == "1427" and num(0.001234) == "0.00123"
    assert seconds(3.44) == "3.4 s" and seconds(83) == "1 min 23 s" and seconds(None) == "–"


def test_stage_seconds_from_benchmark_tables(tmp_path):
    head = "s\th:m:s\tmax_rss\n"
    bench = tmp_path / "benchmarks" / "fish"
    bench.mkdir(parents=True)
    for stem, s in (
        ("ingest", 2.0),
        ("noise_model", 1.5),
        ("fit_noise_model", 0.5),
        ("bootstrap_n2v", 4.0),
        ("train", 10.0),
        ("init_output", 1.0),
        ("predict_1-of-2", 3.0),
        ("predict_2-of-2", 3.5),
        ("gather_predict", 0.5),
        ("evaluate", 0.25),
    ):
        (bench / f"{stem}.tsv").write_text(f"{head}{s}\t0:00:0{int(s)}\tNA\n")
    (tmp_path / "fish").mkdir()
    (tmp_path / "fish" / "ingest.json").write_text(json.dumps({"source": {"uri": "f.tif"}}))
    row = load_row(tmp_path, "fish")
    assert row.seconds == {
        "ingest": 2.0,
        "noise_model": 2.0,
        "train": 14.0,
        "predict": 8.0,
        "evaluate": 0.25,
    }
    assert row.input_uri == "f.tif" and row.outputs == {}


def test_colour_png_is_a_palette_image_with_the_colormap():
    import io

    from PIL import Image

    from denoise.report.images import colour_png, png_bytes

    res = np.random.default_rng(1).normal(0, 5, (64, 64))
    data = colour_png(res, (-15.0, 15.0), "RdBu_r")
    img = Image.open(io.BytesIO(data))
    assert img.mode == "P" and img.size == (64, 64)
    back = np.asarray(img.convert("RGB")).astype(int)
    direct = to_rgb(res, (-15.0, 15.0), "RdBu_r").astype(int)
    assert np.abs(back - direct).max() <= 8  # the same colours, up to the 256-step palette
    assert len(data) < len(png_bytes(to_rgb(res, (-15.0, 15.0), "RdBu_r")))


def test_report_of_rows_without_stores_still_written(tmp_path):
    """A row whose stores are gone (or never made) gets a note, not a crash."""
    from denoise.report.html import build_report

    for name in ("a", "b"):
        d = tmp_path / "results" / name
        d.mkdir(parents=True)
        (d / "ingest.json").write_text(json.dumps({"source": {"uri": "x.tif"}, "axes": "yx"}))
        noref = {"denoised": {"next_frame_mse": 10.0 if name == "a" else 9.0}}
        (d / "metrics.json").write_text(json.dumps({"images": [], "no_reference": noref}))
    out = tmp_path / "report.html"
    build_report(tmp_path / "results", ["a", "b"], out)
    text = out.read_text()
    assert text.count('<section class="compare"') == 1 and "Panels unavailable" in text
    assert "<b>b</b>" in text and "<img" not in text
