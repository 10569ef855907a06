"""Write the repository's GitHub address into every notebook's Colab badge and setup cell.

    make publish REPOSITORY=https://github.com/owner/name

Run it before publishing, and again if the repository moves. Until then the badges say
that the address is not set, and a setup cell run outside a checkout stops with an error
that says so; once set, it installs the package from that address (e.g. in Colab).
`make test` checks that every badge and setup cell names the same address.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ADDRESS = re.compile(r"https://github\.com/([A-Za-z0-9-]+/[A-Za-z0-9._-]+?)(\.git)?/?")
BADGE_LINE = re.compile(r"^(\[!\[Open In Colab\]|\*\*Open in Colab:\*\*).*$", re.MULTILINE)
SETUP_LINE = re.compile(r"^    (raise ModuleNotFoundError\(.*\)|%pip install --quiet git\+\S+)$",
                        re.MULTILINE)
UNSET_SETUP = ('    raise ModuleNotFoundError("cifar_utils: open this notebook in a checkout of the '
               'repository (README)")')
UNSET_BADGE = ("**Open in Colab:** not yet, this copy does not know its GitHub address "
               "(see \"Publishing\" in DEVELOPING.md).")


def badge(repository: str | None, notebook: str) -> str:
    """The badge line of `notebook` for `repository` ("owner/name"), or the unset notice."""
    if repository is None:
        return UNSET_BADGE
    return ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{repository}/blob/main/notebooks/"
            f"{notebook})")


def setup_line(repository: str | None) -> str:
    """The setup cell's line for a missing package: install it from `repository`, or stop."""
    if repository is None:
        return UNSET_SETUP
    return f"    %pip install --quiet git+https://github.com/{repository}"


def owner_and_name(address: str) -> str:
    """"owner/name" from a GitHub address; a clear error for anything else."""
    match = ADDRESS.fullmatch(address.strip())
    if not match:
        raise SystemExit(f"{address!r} is not a GitHub repository address: give it as "
                         "https://github.com/owner/name, e.g. `make publish "
                         "REPOSITORY=https://github.com/owner/name`.")
    return match.group(1)


def publish(repository: str | None, folder: Path = NOTEBOOKS) -> list[Path]:
    """Rewrite the badge (first markdown cell) and the install line (first code cell) of
    every numbered notebook in `folder`; returns the notebooks changed."""
    changed = []
    for path in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text(encoding="utf-8")
        notebook = json.loads(text)
        cells = notebook["cells"]
        title = next(cell for cell in cells if cell["cell_type"] == "markdown")
        setup = next(cell for cell in cells if cell["cell_type"] == "code")
        for cell, pattern, line in ((title, BADGE_LINE, badge(repository, path.name)),
                                    (setup, SETUP_LINE, setup_line(repository))):
            source = "".join(cell["source"])
            if len(pattern.findall(source)) != 1:
                raise SystemExit(f"{path.name}: expected one line matching {pattern.pattern!r} "
                                 "in its first cell of that kind; fix it by hand first.")
            source = pattern.sub(lambda _, line=line: line, source)
            cell["source"] = source.splitlines(keepends=True)
        new = json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not argv[0].strip():
        raise SystemExit("usage: make publish REPOSITORY=https://github.com/owner/name "
                         "(or `make publish REPOSITORY=none` to unset it)")
    repository = None if argv[0].strip().lower() == "none" else owner_and_name(argv[0])
    changed = publish(repository)
    shown = f"https://github.com/{repository}" if repository else "no address"
    print(f"{len(changed)} notebook(s) now name {shown}: commit them, then push.")


if __name__ == "__main__":
    main(sys.argv[1:])
