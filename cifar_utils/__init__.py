"""cifar_utils: the helper package of the CIFAR-10 transfer-learning notebooks.

The notebooks tell the story; this package holds the code they share:

* `data`          loading CIFAR-10 (download or local copy) and the splits every notebook uses
* `reader`        the safe reader of local copies, with md5-checked provenance
* `preprocessing` augmentation layers and `tf.data` pipelines
* `models`        the CNNs, the MobileNetV2 backbone, heads, unfreezing
* `features`      frozen-backbone features, extracted once and cached on disk
* `finetune`      notebook 02's heads and fine-tuning, on cached activations or on images
* `training`      seeding, compiling, schedules, callbacks, a quiet timed `fit`, quick mode
* `metrics`       evaluation, test-time mirroring, accuracy tables
* `gradcam`       Grad-CAM heatmaps, nested models included
* `shipping`      LiteRT export (float32, float16, dynamic-range, int8), accuracy, latency,
                  where int8 errs
* `plots`         every figure of the series
* `results`       the `Recorder` that saves runs, figures and heads; results tables
* `files`         where notebooks write, and atomic writes

Everything in `__all__` (what the notebooks and their exercises use) is available as
`cifar_utils.<name>`; the rest stays in its module, named in the module's docstring
as advanced. Submodules are imported on first use, so `import cifar_utils` is instant
and touches no files: no TensorFlow start-up, no data, no download until a function
needs them. Notebooks call `start_tensorflow()` once, in their setup cell.
"""

import contextlib
import importlib
import os
import sys

# Hide TensorFlow's C++ start-up log lines in notebooks (set the variable to override).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_EXPORTS = {
    "data": ["CLASS_NAMES", "load_cifar10", "load_splits", "stratified_subset"],
    "reader": ["CifarDataError", "ModifiedDataWarning", "UnsafePickleError"],
    "preprocessing": ["augmentation", "make_dataset", "make_pipelines"],
    "models": ["DamagedWeightsError", "WeightsNotFoundError", "build_classic_cnn", "build_improved_cnn",
               "build_large_head", "build_linear_head", "build_mobilenet_v2",
               "build_transfer_model", "chain", "describe_model", "split_mobilenet_v2",
               "unfreeze_top"],
    "features": ["extract_features"],
    "finetune": ["compare_finetuning", "comparison_table", "finetune_on_cache",
                 "finetune_on_images", "train_frozen_head"],
    "training": ["compile_classifier", "cosine_schedule", "distribution_strategy", "fit",
                 "quick_mode", "set_seed", "standard_callbacks", "validation_accuracy"],
    "metrics": ["classification_table", "evaluate", "mirror_helps"],
    "gradcam": ["grad_cam", "pick_examples"],
    "shipping": ["compare_variants", "quantization_errors", "shipping_table",
                 "with_preprocessing"],
    "plots": ["plot_class_examples", "plot_comparison", "plot_confident_mistakes",
              "plot_confusion_matrix", "plot_grad_cam", "plot_history", "plot_predictions",
              "plot_tradeoffs"],
    "results": ["Recorder", "results_table"],
    "files": ["OutputFolderError"],
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["start_tensorflow", *sorted(_HOME), *sorted(_EXPORTS)]


def start_tensorflow() -> str:
    """Start TensorFlow and Keras without start-up noise; return what they run on.

    TensorFlow 2.21 writes log lines from C++ while it loads and probes for CUDA
    (oneDNN notices, "could not find cuda drivers"), before its log level applies, so
    `TF_CPP_MIN_LOG_LEVEL` cannot hide them and they fill a notebook's first output.
    The process's native stderr is muted for that start-up only; Python errors still
    surface as usual. One more C++ notice comes once per process, the first time
    TensorFlow touches a float16 tensor on a CPU whose oneDNN has no float16 kernels
    (it falls back to its own, correctly); the feature cache stores float16 maps, so
    that first touch happens here, muted. TensorFlow's Python logger is set to errors
    only: its warnings (e.g. about retracing when a notebook compares several fresh
    models) are hints for library authors, not for readers.
    """
    with _native_stderr_muted():
        import keras
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        tf.cast(tf.zeros([1], tf.float16), tf.float32)  # the one-off float16 notice
    tf.get_logger().setLevel("ERROR")
    if len(gpus) > 1:
        device = f"{len(gpus)} GPUs, data-parallel (tf.distribute.MirroredStrategy)"
    else:
        device = "a GPU" if gpus else "the CPU"
    return f"TensorFlow {tf.__version__} with Keras {keras.__version__}, running on {device}."


@contextlib.contextmanager
def _native_stderr_muted():
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
