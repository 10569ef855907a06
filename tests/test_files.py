"""Where notebooks write, whatever folder they start in; atomic writes."""

import os

import pytest

from cifar_utils import files
from cifar_utils.files import OutputFolderError, output_folders, repository_root, write_atomic

REPOSITORY = repository_root()


def test_this_checkout_is_found_from_the_package():
    assert REPOSITORY is not None and (REPOSITORY / "cifar_utils" / "files.py").is_file()


@pytest.mark.parametrize("start", ["root", "notebooks", "elsewhere"])
def test_inside_a_checkout_outputs_go_to_the_repository_from_any_working_folder(
        start, tmp_path, monkeypatch):
    monkeypatch.chdir({"root": REPOSITORY, "notebooks": REPOSITORY / "notebooks",
                       "elsewhere": tmp_path}[start])
    full = output_folders()
    assert (full.figures, full.results, full.models) == (
        REPOSITORY / "figures", REPOSITORY / "results", REPOSITORY / "build" / "models")
    quick = output_folders(quick=True)
    assert (quick.figures, quick.results, quick.models) == (
        REPOSITORY / "build/quick/figures", REPOSITORY / "build/quick/results",
        REPOSITORY / "build/quick/models")
    assert str(REPOSITORY) not in full.shown + quick.shown  # no machine paths in notebooks


def test_an_explicit_folder_wins_over_quick_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folders = output_folders("mine", quick=True)
    assert folders.figures == tmp_path / "mine" / "figures"
    assert folders.models == tmp_path / "mine" / "models" and folders.shown == "mine/"


def test_outside_a_checkout_outputs_go_beside_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "repository_root", lambda: None)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert output_folders().results == tmp_path / "cifar10_outputs" / "results"
    assert output_folders(quick=True).figures == tmp_path / "cifar10_outputs/quick/figures"
    notebook = tmp_path / "course" / "01_baseline_cnn.ipynb"
    notebook.parent.mkdir()
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))  # set by Jupyter for its kernels
    assert output_folders().figures == notebook.parent / "cifar10_outputs" / "figures"
    assert output_folders().shown == "cifar10_outputs/ beside the notebook"


def test_create_makes_the_folders_or_names_the_one_it_cannot_write(tmp_path):
    folders = output_folders(tmp_path / "out").create()
    assert folders.models.is_dir() and list(folders.results.iterdir()) == []
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputFolderError, match=r"cannot write to .*file/figures"):
        output_folders(tmp_path / "file").create()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputFolderError, match="locked"):
            output_folders(locked).create()


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_shipped_file_outside_a_checkout_comes_from_the_repository_address(tmp_path,
                                                                             monkeypatch):
    """In Colab the package is installed without `models/`: the file is fetched once from
    `<REPOSITORY>/raw/main/models/`, here a local folder standing in for GitHub."""
    import cifar_utils.files as files
    monkeypatch.setattr(files, "repository_root", lambda: None)
    monkeypatch.setenv("CIFAR_UTILS_CACHE", str(tmp_path / "cache"))
    served = tmp_path / "github" / "raw" / "main" / "models"
    served.mkdir(parents=True)
    (served / "01_improved_cnn.json").write_text('{"run": "01_improved_cnn"}')
    path = files.shipped_file("01_improved_cnn.json", f"file://{tmp_path / 'github'}")
    assert path == tmp_path / "cache" / "models" / "01_improved_cnn.json"
    assert path.read_text() == '{"run": "01_improved_cnn"}'
    monkeypatch.setattr(files, "installed_from", lambda: None)
    with pytest.raises(FileNotFoundError, match="pip install git"):
        files.shipped_file("01_improved_cnn.json")
    monkeypatch.setattr(files, "installed_from", lambda: f"file://{tmp_path / 'github'}")
    (tmp_path / "cache" / "models" / "01_improved_cnn.json").unlink()
    assert files.shipped_file("01_improved_cnn.json").read_text() == '{"run": "01_improved_cnn"}'


def test_the_repository_address_comes_from_a_pip_install_from_git(tmp_path, monkeypatch):
    """`pip install git+https://github.com/owner/name` records that address in the package's
    `direct_url.json`; an editable or other install records none that is a web address."""
    import importlib.metadata

    import cifar_utils.files as files

    class Installed:
        def __init__(self, text):
            self.text = text

        def read_text(self, name):
            assert name == "direct_url.json"
            return self.text

    for text, expected in (
            ('{"url": "https://github.com/ada/cifar-lessons.git", "vcs_info": {"vcs": "git"}}',
             "https://github.com/ada/cifar-lessons"),
            ('{"url": "file:///home/ada/cifar", "dir_info": {"editable": true}}', None),
            (None, None)):
        monkeypatch.setattr(importlib.metadata, "distribution", lambda _, t=text: Installed(t))
        assert files.installed_from() == expected
