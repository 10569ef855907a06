"""The supported Python versions are stated once, consistently, and enforced by make."""

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
