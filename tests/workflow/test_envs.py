"""Conda environments parse, list the package's dependencies, and install the package itself."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO


@pytest.mark.parametrize("name", ["denoise.yaml", "denoise-cuda.yaml"])
def test_env_parses_and_installs_package(name):
    env = yaml.safe_load((REPO / "envs" / name).read_text())
    deps = env["dependencies"]
    names = {d.split("=")[0].split(">")[0].split("<")[0] for d in deps if isinstance(d, str)}
    assert {"python", "pip", "numpy", "dask", "zarr", "tifffile", "pydantic"} <= names
    assert any(n.startswith("pytorch") for n in names)
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(p.startswith("ome-zarr-models") for p in pip)
    post = REPO / "envs" / name.replace(".yaml", ".post-deploy.sh")
    assert "pip install" in post.read_text(), "the env must install the denoise package itself"


def test_every_rule_uses_the_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        if smk.name == "common.smk":
            assert 'CONDA_ENV = "../../envs/denoise.yaml"' in text
            continue
        assert text.count("rule ") == text.count("CONDA_ENV"), smk.name
