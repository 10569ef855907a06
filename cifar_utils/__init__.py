"""cifar_utils: the plumbing of the CIFAR-10 transfer-learning notebooks.

The notebooks show every idea they teach in Keras code; this package holds the rest (its
modules: DEVELOPING.md, section 'The package'). Every name in `__all__` is `cifar_utils.<name>`.
Submodules load on first use, so `import cifar_utils` is instant and touches no file;
notebooks call `start_tensorflow()`.
"""

import contextlib
import importlib
import os
import sys
import warnings

# Hide TensorFlow's C++ start-up log lines in notebooks (set the variable to override).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_EXPORTS = {
    "data": ["CLASS_NAMES", "load_cifar10", "load_splits", "stratified_subset"],
    "reader": ["CifarDataError", "ModifiedDataWarning", "UnsafePickleError"],
    "pipelines": ["make_cached_dataset", "make_dataset", "make_pipelines"],
    "features": ["extract_features"],
    "models": ["DamagedWeightsError", "WeightsNotFoundError", "build_dense_head",
               "build_linear_head", "count_params", "describe_model", "mobilenet_v2_block",
               "mobilenet_v2_weights", "split_mobilenet_v2"],
    "training": ["TrainingLog", "distribution_strategy", "format_duration", "train_head"],
    "metrics": ["classification_table", "evaluate", "mirror_helps"],
    "gradcam": ["activations_and_outputs", "last_feature_map", "last_layer", "pick_examples"],
    "shipping": ["LiteRTModel", "converter", "measure_variants", "quantization_debugger",
                 "quantization_errors", "shipping_table"],
    "plots": ["plot_class_examples", "plot_comparison", "plot_confident_mistakes",
              "plot_confusion_matrix", "plot_evaluation", "plot_grad_cam", "plot_history",
              "plot_predictions", "plot_tradeoffs"],
    "results": ["Recorder", "results_table"],
    "files": ["OutputFolderError"],
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["muted_native_logs", "quick_mode", "start_tensorflow", *sorted(_HOME),
           *sorted(_EXPORTS)]


QUICK_ENV = "CIFAR_UTILS_QUICK"  # switches every notebook to quick mode


def quick_mode(default=False) -> bool:
    """Quick mode: `$CIFAR_UTILS_QUICK` (1 or 0) when set (tests set it), else `default`, the
    setup cell's value a student edits. Small subsets, 1-2 epochs; its numbers are not results.
    It imports nothing, so the setup cell may call it before `start_tensorflow` mutes TF."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value == "":
        return bool(default)
    if value in ("0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{QUICK_ENV}={value!r} is not understood: set it to 1 for quick mode, "
                     "or to 0 (or unset it) for the full run.")


def start_tensorflow() -> str:
    """Start TensorFlow and Keras on every GPU, without start-up noise; say what they run on.

    TensorFlow's C++ start-up lines (and a one-off float16 notice) precede its log level, so
    native stderr is muted meanwhile; its Python warnings (library authors' hints) are silenced."""
    with muted_native_logs():
        import keras
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        tf.cast(tf.zeros([1], tf.float16), tf.float32)  # the one-off float16 notice
    tf.get_logger().setLevel("ERROR")
    # `model.fit` warns that `shuffle` is ignored for a `tf.data` pipeline: ours shuffle themselves.
    warnings.filterwarnings("ignore", message=r"`shuffle=True` was passed, but will be ignored")
    from .training import distribution_strategy  # imports Keras: after the muted start-up
    strategy = distribution_strategy()
    if strategy.num_replicas_in_sync > 1:
        where = f"{strategy.num_replicas_in_sync} GPUs, tf.distribute.MirroredStrategy"
    else:
        where = f"{'a GPU' if gpus else 'the CPU'}, TensorFlow's default strategy (one device)"
    return f"TensorFlow {tf.__version__} with Keras {keras.__version__}, running on {where}."


@contextlib.contextmanager
def muted_native_logs():
    """Mute what C++ code (TensorFlow's start-up, the LiteRT converter and interpreter)
    writes to the process's stderr, for one block; Python's errors still surface."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def __getattr__(name):
    if name in _EXPORTS:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
