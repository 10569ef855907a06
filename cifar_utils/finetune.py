"""Transfer-learning recipes shared by notebooks 02 and 03: frozen heads and fine-tuning.

* `train_frozen_head` trains one of notebook 02's two heads on cached pooled features;
  notebook 03 uses it too when it runs without notebook 02's saved heads.
* `finetune_on_cache` fine-tunes the top blocks of MobileNetV2 on cached activations of
  the frozen lower blocks (see `models.split_mobilenet_v2`): exact while those blocks
  stay frozen, and several times cheaper per epoch than running every image through
  the whole network.
* `finetune_on_images` is the textbook way, pixels in with random flips and shifts, for
  comparison.
* `compare_finetuning` trains several variants side by side and scores them on the
  validation split; `comparison_table` formats the result for reading.
"""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from .data import stratified_subset
from .features import FeatureSplit, SplitFeatures
from .models import (
    build_large_head,
    build_mobilenet_v2,
    build_transfer_model,
    count_params,
    split_mobilenet_v2,
    unfreeze_top,
)
from .training import (
    compile_classifier,
    cosine_schedule,
    distribution_strategy,
    fit,
    set_seed,
    standard_callbacks,
)

HEAD_RECIPES = {
    "classic": dict(units=128, dropout=0.5, l2=0, batchnorm=False, learning_rate=1e-4,
                    batch_size=32, patience=3, reduce_lr_patience=0, mirrored=False,
                    epochs=60),
    "ours": dict(units=1024, dropout=0.5, l2=1e-4, batchnorm=True, learning_rate=1e-3,
                 batch_size=256, patience=6, reduce_lr_patience=2, mirrored=True, epochs=40),
}
"""Notebook 02's heads: the classic tutorial head (Dense 128 + Dropout, Adam 1e-4, until
validation accuracy stops improving) and ours (Dense 1024 + BatchNorm + Dropout + L2,
trained on the features of the images and of their mirror images). `epochs` is the
maximum; early stopping usually ends sooner."""


def train_frozen_head(which, features, *, epochs=None):
    """Train notebook 02's head `which` ("classic" or "ours") on pooled `features`.

    `features` comes from `extract_features` (with `mirrored=True` for "ours"). Early
    stopping watches the validation accuracy, so `epochs` is a maximum (None: the
    recipe's, as in notebook 02). Returns `(head, TrainingRun)`.
    """
    if which not in HEAD_RECIPES:
        raise ValueError(f"which must be one of {sorted(HEAD_RECIPES)}, got {which!r}")
    recipe = HEAD_RECIPES[which]
    epochs = recipe["epochs"] if epochs is None else epochs
    head = build_large_head(num_features=features.train.features.shape[1], units=recipe["units"],
                            dropout=recipe["dropout"], l2=recipe["l2"],
                            batchnorm=recipe["batchnorm"])
    compile_classifier(head, learning_rate=recipe["learning_rate"])
    train = features.train_and_mirrored() if recipe["mirrored"] else features.train
    run = fit(head, train, features.val, epochs=epochs, batch_size=recipe["batch_size"],
              callbacks=standard_callbacks(patience=recipe["patience"],
                                           reduce_lr_patience=recipe["reduce_lr_patience"]))
    return head, run


def _copy_of(head, *, freeze_batchnorm):
    """A fresh copy of `head` with the same weights; its BatchNorm frozen if asked.

    A frozen BatchNorm runs in inference mode in Keras 3: it keeps the statistics of the
    frozen features the head was trained on, instead of chasing the features of blocks
    that fine-tuning is changing.
    """
    with distribution_strategy().scope():
        copy = keras.models.clone_model(head)
        copy.set_weights(head.get_weights())
    if freeze_batchnorm:
        for layer in copy.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    return copy


def _train_subset(maps, size, seed):
    """The same stratified subset of the training maps and of their mirror images."""
    if size is None:
        return maps
    pick = [FeatureSplit(*stratified_subset(*part, size, seed=seed))
            for part in (maps.train, maps.train_mirrored)]
    return SplitFeatures(train=pick[0], val=maps.val, test=maps.test, train_mirrored=pick[1],
                         val_mirrored=maps.val_mirrored, test_mirrored=maps.test_mirrored,
                         seconds=maps.seconds)


def finetune_on_cache(maps, head, *, image_size, cut, blocks, epochs, learning_rate,
                      batch_size=64, max_shift=0, freeze_head_batchnorm=True,
                      warmup_epochs=0.5, train_size=None, seed=42):
    """Fine-tune the top `blocks` blocks of MobileNetV2, and a copy of `head`, on cached maps.

    Args:
        maps: activations of the frozen lower blocks, from
            `extract_features(lower, data, ..., mirrored=True)` with `lower` from
            `split_mobilenet_v2(backbone, cut)`.
        head: the head trained on the frozen features (notebook 02); it is copied.
        image_size, cut: as for the maps (a fresh ImageNet backbone is split the same way).
        blocks: how many blocks to fine-tune, counted from the top (at most the blocks
            above `cut`).
        epochs, learning_rate: length and peak of a warm-up + cosine schedule.
        batch_size: per replica.
        max_shift: random shifts of up to this many whole cells (`make_cached_dataset`).
        freeze_head_batchnorm: keep the head's BatchNorm in inference mode.
        warmup_epochs: length of the linear warm-up.
        train_size: a stratified subset of the training maps (for quick comparisons).
        seed: for the initial weights' copy, the order and the random draws.

    Every image is drawn plain or mirrored at random each epoch. The backbone's
    BatchNorm layers stay frozen, as in `unfreeze_top`. Early stopping only keeps the
    weights of the best validation epoch. Returns `(model, TrainingRun)`: the model maps
    cached activations to class probabilities.
    """
    from .preprocessing import make_cached_dataset

    set_seed(seed)
    _, upper = split_mobilenet_v2(build_mobilenet_v2(image_size), cut)
    unfreeze_top(upper, blocks, unit="blocks")
    model = build_transfer_model(upper, _copy_of(head, freeze_batchnorm=freeze_head_batchnorm))
    maps = _train_subset(maps, train_size, seed)
    train = make_cached_dataset(maps, batch_size=batch_size, max_shift=max_shift, seed=seed)
    schedule = cosine_schedule(learning_rate, epochs, steps_per_epoch=len(train),
                               warmup_epochs=warmup_epochs)
    compile_classifier(model, learning_rate=schedule, clipnorm=1.0)
    run = fit(model, train, maps.val, epochs=epochs,
              callbacks=standard_callbacks(patience=epochs, reduce_lr_patience=0))
    return model, run


def finetune_on_images(data, head, *, image_size, preprocess, augment, blocks, epochs,
                       learning_rate, batch_size=64, freeze_head_batchnorm=True,
                       warmup_epochs=0.5, train_size=None, seed=42):
    """The same fine-tuning the textbook way: images in, random flips and shifts of pixels.

    Arguments as for `finetune_on_cache`, with `data` from `load_splits` instead of the
    maps, and the `preprocess` and `augment` of `make_dataset`. Every step runs each
    image through the whole network, frozen blocks included. Returns
    `(model, TrainingRun)`; the model maps images to class probabilities.
    """
    from .preprocessing import make_pipelines

    set_seed(seed)
    backbone = build_mobilenet_v2(image_size)
    unfreeze_top(backbone, blocks, unit="blocks")
    model = build_transfer_model(backbone,
                                 _copy_of(head, freeze_batchnorm=freeze_head_batchnorm))
    if train_size is not None:
        data = type(data)(train=stratified_subset(*data.train, train_size, seed=seed),
                          val=data.val, test=data.test, provenance=data.provenance)
    pipes = make_pipelines(data, batch_size=batch_size, image_size=image_size,
                           preprocess=preprocess, augment=augment, seed=seed)
    schedule = cosine_schedule(learning_rate, epochs, steps_per_epoch=len(pipes.train),
                               warmup_epochs=warmup_epochs)
    compile_classifier(model, learning_rate=schedule, clipnorm=1.0)
    run = fit(model, pipes.train, pipes.val, epochs=epochs,
              callbacks=standard_callbacks(patience=epochs, reduce_lr_patience=0))
    return model, run


def compare_finetuning(variants, **common) -> pd.DataFrame:
    """Train each variant, side by side; one row per variant, scored on the validation split.

    `variants` maps a label to the keyword arguments that differ (e.g.
    `{"top 2 blocks": dict(blocks=2), ...}`); `common` holds the rest, including
    `maps` and `head`. A variant with `images=True` runs `finetune_on_images` (give it
    `data`, `preprocess` and `augment`). Columns: blocks, trained parameters, seconds
    per epoch, validation accuracy (of the best epoch, whose weights early stopping
    keeps). Show it with `comparison_table`.
    """
    rows = {}
    for label, changes in variants.items():
        settings = {**common, **changes}
        print(f"-- {label}")
        if settings.pop("images", False):
            for key in ("maps", "max_shift", "cut"):  # images need no cache
                settings.pop(key, None)
            model, run = finetune_on_images(**settings)
        else:
            for key in ("data", "preprocess", "augment"):
                settings.pop(key, None)
            model, run = finetune_on_cache(**settings)
        rows[label] = {"blocks": settings["blocks"],
                       "trained parameters": count_params(model)["trainable"],
                       "seconds per epoch": float(np.mean(run.epoch_seconds)),
                       "validation accuracy": max(run.history["val_accuracy"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def comparison_table(comparison) -> pd.DataFrame:
    """`compare_finetuning`'s result formatted for people (for display only)."""
    from .training import format_duration

    return pd.DataFrame({
        "blocks fine-tuned": comparison["blocks"],
        "trained parameters": comparison["trained parameters"].map("{:,}".format),
        "time per epoch (with validation)": comparison["seconds per epoch"].map(format_duration),
        "validation accuracy": comparison["validation accuracy"].map("{:.1%}".format),
    }, index=comparison.index)
