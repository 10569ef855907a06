"""The package surface: every exported name resolves; importing it touches nothing."""

import subprocess
import sys

import pytest

import cifar_utils

AUDIT = r"""
import os, sys
events = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str):
        if args[0].startswith((os.environ["KERAS_HOME"], os.environ["CIFAR10_DIR"])):
            events.append((event, args[0]))
        elif args[1] not in (None, "r", "rb") and "w" in str(args[1]):
            events.append((event, args[0]))
    elif event in ("socket.connect", "urllib.Request", "os.mkdir"):
        events.append((event, str(args[0])))
sys.addaudithook(hook)
import cifar_utils
print(sorted({"keras", "tensorflow", "matplotlib.pyplot"} & set(sys.modules)))
print(events)
"""


def test_import_does_no_io_and_loads_no_framework(tmp_path):
    env = {"KERAS_HOME": str(tmp_path / "keras"), "CIFAR10_DIR": str(tmp_path / "data"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-B", "-c", AUDIT], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["[]", "[]"]
    assert list(tmp_path.iterdir()) == []


def test_every_exported_name_resolves():
    for name in cifar_utils.__all__:
        assert getattr(cifar_utils, name) is not None, name
    assert cifar_utils.load_cifar10 is cifar_utils.data.load_cifar10


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_helper"):
        cifar_utils.no_such_helper  # noqa: B018


def run_python(code):
    """`code` run in a fresh interpreter: its stdout and stderr."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)


def test_start_tensorflow_is_quiet_and_says_where_it_runs():
    code = "import cifar_utils; print(cifar_utils.start_tensorflow())"
    result = run_python(code)
    assert result.stdout.startswith("TensorFlow 2.") and "running on the CPU" in result.stdout
    assert "TensorFlow's default strategy (one device)" in result.stdout
    assert result.stderr == ""


def test_float16_arrays_add_no_native_log_lines_after_start():
    """The cached maps are float16; TensorFlow's one-off oneDNN notice about float16 on
    CPUs without AVX-512 FP16 (a C++ log line) must not land in a notebook's output."""
    code = ("import cifar_utils, numpy as np; cifar_utils.start_tensorflow()\n"
            "import tensorflow as tf\n"
            "tf.cast(tf.constant(np.ones((2, 2), np.float16)), tf.float32)\n"
            "print('ok')")
    result = run_python(code)
    assert result.stdout == "ok\n"
    assert result.stderr == ""


def test_muted_native_logs_hides_native_stderr_for_one_block_only():
    code = ("import os, cifar_utils\n"
            "before = len(os.listdir('/proc/self/fd'))\n"
            "with cifar_utils.muted_native_logs():\n"
            "    os.write(2, b'native log line\\n')\n"
            "os.write(2, b'after\\n')\n"
            "try:\n"
            "    with cifar_utils.muted_native_logs():\n"
            "        raise RuntimeError('an error inside')\n"
            "except RuntimeError as err:\n"
            "    print(err)\n"
            "os.write(2, b'restored\\n')\n"
            "print(len(os.listdir('/proc/self/fd')) == before)\n")
    result = run_python(code)
    assert result.stderr == "after\nrestored\n"
    assert result.stdout == "an error inside\nTrue\n"  # errors surface; no descriptor leaks


def test_quick_mode_starts_no_tensorflow():
    """The setup cell asks for quick mode before `start_tensorflow` mutes TensorFlow's C++
    start-up lines: if asking imported TensorFlow, those lines would land in the notebook."""
    code = ("import sys, cifar_utils; cifar_utils.quick_mode(False)\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert run_python(code).stdout == "False False\n"
