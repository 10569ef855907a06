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
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import cifar_utils as cu
from cifar_utils.training import replicas

devices = json.loads(sys.argv[1])
strategy = cu.distribution_strategy(devices)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int64") + 2 * (x[:, 1] > 0)
cu.set_seed(0)
head = cu.compile_classifier(cu.build_linear_head(num_features=8, num_classes=4), 0.1)
run = cu.fit(head, (x, y), epochs=3, batch_size=int(sys.argv[2]), shuffle=False)
print(json.dumps({"replicas": replicas(), "mirrored": type(strategy).__name__,
                  "model_strategy": type(head.distribute_strategy).__name__,
                  "loss": run.history["loss"]}))
"""


def train(devices, batch_size):
    out = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(devices), str(batch_size)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_mirrored_training_on_two_devices_matches_one_device():
    single = train(None, 16)  # no GPU here: the default strategy, one replica
    mirrored = train(["/cpu:0", "/cpu:1"], 8)  # 8 per replica: the same 16 per step
    assert single["replicas"] == 1 and single["mirrored"] == "_DefaultDistributionStrategy"
    assert mirrored["replicas"] == 2 and mirrored["mirrored"] == "MirroredStrategy"
    assert mirrored["model_strategy"] == "MirroredStrategy"  # built under its scope
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-4)
    assert single["loss"][-1] < single["loss"][0]  # it trained
