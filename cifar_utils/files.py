"""Where notebooks write and cache, and writing files so that an interruption loses nothing."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

OUTSIDE_CHECKOUT = "cifar10_outputs"  # created beside the notebook outside a checkout
CACHE_ENV = "CIFAR_UTILS_CACHE"  # overrides where cached features are stored
SHIPPED = "models"  # the repository's trained models, for notebooks that run on their own


class OutputFolderError(OSError):
    """A folder the notebook must write to cannot be created or written."""


def repository_root() -> Path | None:
    """The checkout this package is imported from, or None when it is installed elsewhere."""
    root = Path(__file__).resolve().parent.parent
    is_checkout = (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir()
    return root if is_checkout else None


def notebook_folder() -> Path:
    """The running notebook's folder: Jupyter names it in `$JPY_SESSION_NAME`, else the cwd
    (Jupyter, nbconvert and Colab start the kernel beside the notebook; papermill may not)."""
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
                tempfile.TemporaryFile(dir=folder).close()
            except OSError as err:
                raise OutputFolderError(
                    f"cannot write to {folder} ({err.strerror or err}). Make it writable, "
                    "or pass another folder as OUTPUT_DIR (e.g. `papermill -p OUTPUT_DIR "
                    "/some/folder`).") from None
        return self


def output_folders(output_dir=None, *, quick=False) -> OutputFolders:
    """Where a notebook writes `figures/`, `results/` and trained models: `output_dir` if given;
    in a checkout, the repository (models in `build/models/`; with `quick`, all in `build/quick/`);
    installed elsewhere (Colab), `cifar10_outputs/` (or `.../quick/`) beside the notebook."""
    if output_dir is not None:
        root, shown = Path(output_dir).expanduser().resolve(), f"{output_dir}/"
    elif (repository := repository_root()) is not None:
        if not quick:
            return OutputFolders(repository / "figures", repository / "results",
                                 repository / "build" / "models", shown="the repository")
        root, shown = repository / "build" / "quick", "build/quick/ in the repository"
    else:
        root = notebook_folder() / OUTSIDE_CHECKOUT / ("quick" if quick else "")
        shown = f"{OUTSIDE_CHECKOUT}/{'quick/' if quick else ''} beside the notebook"
    return OutputFolders(root / "figures", root / "results", root / "models", shown=shown)


def shipped_file(name, repository=None) -> Path:
    """`models/<name>`, a file the repository ships: in a checkout, the file itself; installed
    elsewhere (Colab), downloaded once from `repository` (its GitHub address) into the cache."""
    if (root := repository_root()) is not None:
        if not (path := root / SHIPPED / name).is_file():
            raise FileNotFoundError(f"{SHIPPED}/{name} is not in this checkout: the repository "
                                    "ships it from its full run (see the README).")
        return path
    if (repository := repository or installed_from()) is None:
        raise FileNotFoundError(f"{SHIPPED}/{name} comes from the repository, whose address this "
                                "installation does not record: pip install git+<its address>.")
    import keras
    (cache := default_cache_dir()).mkdir(parents=True, exist_ok=True)  # else Keras uses /tmp
    return Path(keras.utils.get_file(name, f"{repository}/raw/main/{SHIPPED}/{name}",
                                     cache_dir=cache, cache_subdir=SHIPPED))


def installed_from() -> str | None:
    """The address pip installed this package from (`pip install git+https://...`, as the
    setup cell does in Colab), read from its `direct_url.json`; None for any other install."""
    import importlib.metadata
    import json
    try:
        url = json.loads(importlib.metadata.distribution("cifar-utils").read_text(
            "direct_url.json") or "{}").get("url")
    except importlib.metadata.PackageNotFoundError:
        return None
    return url.removesuffix(".git") if url and url.startswith("https://") else None


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
        umask = os.umask(0)  # reading the umask means setting it: restore it at once
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; results are not
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
