"""`make publish REPOSITORY=...` writes one address into every badge and setup cell."""

import json
import shutil
import subprocess
from pathlib import Path

import publish  # tools/, on the path from conftest.py
import pytest

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_cells(path):
    cells = json.loads(path.read_text())["cells"]
    title = next(c for c in cells if c["cell_type"] == "markdown")
    setup = next(c for c in cells if c["cell_type"] == "code")
    return "".join(title["source"]), "".join(setup["source"])


def addresses(folder):
    """(badge line, install line of the setup cell) of each notebook in `folder`."""
    found = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        title, setup = first_cells(path)
        found.append((publish.BADGE_LINE.search(title).group(0),
                      publish.SETUP_LINE.search(setup).group(0), path.name))
    return found


def test_committed_badges_and_setup_cells_name_one_address():
    """All unset (the badge says so) or all one repository, each badge at its own notebook."""
    found = addresses(ROOT / "notebooks")
    assert len(found) == len(NOTEBOOKS) >= 5
    setups = {setup for _, setup, _ in found}
    assert len(setups) == 1, setups
    repository = publish.ADDRESS.search(setups.pop())
    for badge, _, name in found:
        assert badge == publish.badge(repository and repository.group(1), name)
    assert all("OWNER/REPO" not in "".join(first_cells(p)) for p in NOTEBOOKS)


def test_publish_writes_the_address_everywhere_and_can_unset_it(tmp_path):
    for path in NOTEBOOKS:
        shutil.copy(path, tmp_path / path.name)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    changed = publish.publish(publish.owner_and_name("https://github.com/ada/cifar-lessons.git"),
                              tmp_path)
    assert len(changed) == len(NOTEBOOKS)
    for badge, setup, name in addresses(tmp_path):
        assert f"colab.research.google.com/github/ada/cifar-lessons/blob/main/notebooks/{name})" \
            in badge
        assert setup == "    %pip install --quiet git+https://github.com/ada/cifar-lessons"
    notebook = json.loads((tmp_path / NOTEBOOKS[1].name).read_text())
    original = json.loads(before[NOTEBOOKS[1].name])
    assert len(notebook["cells"]) == len(original["cells"])
    assert notebook["cells"][2:] == original["cells"][2:]  # nothing else touched
    assert publish.publish(publish.owner_and_name("https://github.com/ada/cifar-lessons"),
                           tmp_path) == []  # a second run changes nothing
    publish.publish(None, tmp_path)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("address", ["OWNER/REPO", "https://gitlab.com/a/b", "github.com/a",
                                     "https://github.com/a/b/tree/main"])
def test_publish_refuses_what_is_not_a_github_address(address):
    with pytest.raises(SystemExit, match="is not a GitHub repository address"):
        publish.owner_and_name(address)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_publish_without_an_address_says_how_to_call_it():
    result = subprocess.run(["make", "-s", "publish"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "make publish REPOSITORY=https://github.com/owner/name" in result.stderr
