"""Several devices: data-parallel training under MirroredStrategy gives the single-device loss.

A machine without GPUs can still run `MirroredStrategy`: TensorFlow splits its CPU into
two logical devices. That has to happen before TensorFlow starts, so each run is a
fresh Python process.
"""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import keras
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import cifar_utils as cu

devices = json.loads(sys.argv[1])
strategy = cu.distribution_strategy(devices)
default = tf.distribute.get_strategy()  # what code after the call gets without asking
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0)
keras.utils.set_random_seed(0)
head = cu.build_linear_head(num_features=8, num_classes=4)  # no scope: the strategy is global
head.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
             metrics=["accuracy"])
log = cu.TrainingLog()
head.fit(x, y, epochs=3, batch_size=int(sys.argv[2]), shuffle=False, verbose=0, callbacks=[log])
after = cu.distribution_strategy()  # as start_tensorflow calls it: no GPUs here, the default
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "mirrored": type(strategy).__name__,
                  "default_is_it": default is strategy,
                  "model_strategy": type(head.distribute_strategy).__name__,
                  "variable_kind": type(head.weights[0].value).__name__,
                  "after": type(after).__name__, "after_is_default": after is tf.distribute.get_strategy(),
                  "loss": log.history["loss"]}))
"""


def train(devices, batch_size):
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(devices), str(batch_size)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[-2].startswith("Training took") and len(lines) == 5  # the log's lines
    return json.loads(lines[-1])


def test_mirrored_training_on_two_devices_matches_one_device():
    """Batch sizes are global: 16 per step on one device, 8 on each of two."""
    single = train(None, 16)  # no GPU here: the default strategy, one replica
    mirrored = train(["/cpu:0", "/cpu:1"], 16)
    assert single["replicas"] == 1 and single["mirrored"] == "_DefaultDistributionStrategy"
    assert mirrored["replicas"] == 2 and mirrored["mirrored"] == "MirroredStrategy"
    assert mirrored["default_is_it"] and single["default_is_it"]  # set for everything after
    assert mirrored["model_strategy"] == "MirroredStrategy"  # built under it without a scope
    assert mirrored["variable_kind"] == "MirroredVariable"  # one copy per device
    assert single["variable_kind"] == "ResourceVariable"
    assert mirrored["after"] == single["after"] == "_DefaultDistributionStrategy"
    assert mirrored["after_is_default"]
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-4)
    assert single["loss"][-1] < single["loss"][0]  # it trained
