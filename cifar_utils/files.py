"""Where the notebooks write, and writing files so that an interruption loses nothing.

A notebook writes three kinds of files (`output_folders`):

* `figures/`: the plots, shown in the README;
* `results/`: one JSON file per trained model, with its test predictions;
* trained heads that a later notebook starts from (`build/models/`, not committed).

Inside a checkout of the repository they go into the repository itself, found from
this package's location, so it does not matter which folder Jupyter, papermill or
nbconvert starts the kernel in. Quick mode writes under `build/quick/` instead, leaving
the committed figures and results alone. With the package installed from PyPI or git
(Colab, a notebook copied elsewhere) there is no repository: everything goes into
`cifar10_outputs/` beside the notebook. An explicit `output_dir` always wins.

Frozen features are cached elsewhere, in `default_cache_dir()`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

OUTSIDE_CHECKOUT = "cifar10_outputs"
"""Folder created beside the notebook when the package is not run from a checkout."""

CACHE_ENV = "CIFAR_UTILS_CACHE"
"""Environment variable overriding where cached features are stored."""


class OutputFolderError(OSError):
    """A folder the notebook must write to cannot be created or written."""


def repository_root() -> Path | None:
    """The checkout this package is imported from, or None when it is installed elsewhere."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def notebook_folder() -> Path:
    """The running notebook's folder: Jupyter names it in `$JPY_SESSION_NAME`, else the cwd.

    Jupyter, nbconvert and Colab start the kernel beside the notebook, so the working
    folder is the notebook's folder unless papermill was called from elsewhere.
    """
    session = os.environ.get("JPY_SESSION_NAME")
    if session and Path(session).parent.is_dir():
        return Path(session).resolve().parent
    return Path.cwd()


@dataclass(frozen=True)
class OutputFolders:
    """The three folders a notebook writes to; `shown` is how they are named to readers."""

    figures: Path
    results: Path
    models: Path
    shown: str

    def create(self) -> OutputFolders:
        """Create the folders and check that files can be written there, before any training."""
        for folder in (self.figures, self.results, self.models):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=folder):
                    pass
            except OSError as err:
                raise OutputFolderError(
                    f"cannot write to {folder} ({err.strerror or err}). Make it writable, "
                    "or pass another folder as OUTPUT_DIR (e.g. `papermill -p OUTPUT_DIR "
                    "/some/folder`)."
                ) from None
        return self


def output_folders(output_dir=None, *, quick=False) -> OutputFolders:
    """Where a notebook writes figures, results and trained heads (see the module docstring).

    Args:
        output_dir: a folder of your choice (relative to the working folder); it
            receives `figures/`, `results/` and `models/`. None: the repository, or
            `cifar10_outputs/` beside the notebook outside a checkout.
        quick: quick mode; with `output_dir=None` it writes under `build/quick/`
            (`cifar10_outputs/quick/` outside a checkout).
    """
    if output_dir is not None:
        root = Path(output_dir).expanduser().resolve()
        return OutputFolders(root / "figures", root / "results", root / "models",
                             shown=f"{output_dir}/")
    repository = repository_root()
    if repository is not None:
        if quick:
            root = repository / "build" / "quick"
            return OutputFolders(root / "figures", root / "results", root / "models",
                                 shown="build/quick/ in the repository")
        return OutputFolders(repository / "figures", repository / "results",
                             repository / "build" / "models", shown="the repository")
    root = notebook_folder() / OUTSIDE_CHECKOUT / ("quick" if quick else "")
    return OutputFolders(root / "figures", root / "results", root / "models",
                         shown=f"{OUTSIDE_CHECKOUT}/{'quick/' if quick else ''} beside the "
                               "notebook")


def default_cache_dir() -> Path:
    """`$CIFAR_UTILS_CACHE`, else `$XDG_CACHE_HOME/cifar_utils`, else `~/.cache/cifar_utils`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifar_utils"


def write_atomic(path: Path, write) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; results are not
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
