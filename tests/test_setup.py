"""The supported Python versions are stated once, consistently, and enforced by make."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUPPORTED = ["3.11", "3.12", "3.13"]


def test_readme_pyproject_and_makefile_name_the_same_versions():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^SUPPORTED := (.*)$", makefile, re.MULTILINE).group(1).split() == SUPPORTED
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.14"
    assert "Python 3.11, 3.12 or 3.13" in (ROOT / "README.md").read_text()
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in SUPPORTED


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("version", ["3.10", "3.14", None])
def test_make_stops_at_once_on_an_unsupported_interpreter(tmp_path, version):
    python = tmp_path / "python3.x"
    if version:
        python.write_text(f"#!/bin/sh\necho {version}\n")
        python.chmod(0o755)
    result = subprocess.run(["make", "-s", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}",
                             "test"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and not (tmp_path / "venv").exists()
    assert "needs Python 3.11, 3.12 or 3.13" in result.stderr
    assert "make PYTHON=python3.12 test" in result.stderr
    assert (version or "not a Python interpreter") in result.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("quick", [None, "0", "1"])
def test_make_series_in_quick_mode_leaves_the_committed_notebooks_alone(quick):
    env = {name: value for name, value in os.environ.items() if name != "CIFAR_UTILS_QUICK"}
    if quick is not None:
        env["CIFAR_UTILS_QUICK"] = quick
    result = subprocess.run(["make", "-n", "series", "NOTEBOOKS=notebooks/00_data_tour.ipynb"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    if quick == "1":  # executed copies go to build/quick/, the committed outputs stay
        assert "--output-dir build/quick/notebooks" in result.stdout
        assert "--inplace" not in result.stdout
    else:  # the full run saves its outputs into the notebooks, as committed
        assert "--inplace" in result.stdout
