"""One distributed training step, and the model and optimizer it updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from delf_core.model import DelfModel, ModelConfig, create_model
from delf_core.model.initial_weights import seed_initial_weights
from delf_core.training.config import TrainConfig
from delf_core.training.losses import compute_losses, correct_predictions
from delf_core.training.schedule import linear_decay


def model_overrides(config: TrainConfig, num_classes: int) -> dict:
    """The ModelConfig fields, taken from the training flags of the same names."""
    fields = (f.name for f in dataclasses.fields(ModelConfig) if f.name != "num_classes")
    return {"num_classes": num_classes, **{name: getattr(config, name) for name in fields}}


def build_model_and_optimizer(
    config: TrainConfig, num_classes: int, strategy: tf.distribute.Strategy
) -> tuple[DelfModel, keras.optimizers.Optimizer]:
    """The model with all its variables, and SGD (momentum 0.9, linear decay), in `strategy`."""
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    variant = "delg_r50" if config.delg_global_features else "delf_r50"
    with strategy.scope():
        model = create_model(variant, **model_overrides(config, num_classes))
        model.build_for(config.image_size)
        seed_initial_weights(model, config.seed)
        optimizer = keras.optimizers.SGD(
            learning_rate=linear_decay(config.initial_lr, config.max_iters), momentum=0.9
        )
        if config.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    return model, optimizer


def make_train_step(
    model: DelfModel,
    optimizer: keras.optimizers.Optimizer,
    strategy: tf.distribute.Strategy,
    config: TrainConfig,
    num_classes: int,
) -> Callable:
    """A tf.function `(distributed iterator, steps) -> metrics` that trains `steps` steps.

    Running several steps per call spares the Python round trip between steps. Returns
    the last step's losses and accuracies, summed over replicas (each replica's values
    are already divided by the global batch).
    """
    global_batch = config.batch_size

    def step_fn(images: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
        checks = [
            tf.debugging.assert_non_negative(labels, message="label below 0"),
            tf.debugging.assert_less(
                labels,
                tf.cast(num_classes, labels.dtype),
                message=f"label not below num_classes={num_classes}",
            ),
        ]
        # In a graph, asserts run in no set order with the losses; reading the labels
        # through them makes a bad label fail with this message, never the loss op's.
        with tf.control_dependencies(checks):
            labels = tf.identity(labels)
        with tf.GradientTape() as tape:
            outputs = model(images, labels=labels, training=True)
            losses = compute_losses(outputs, labels, global_batch, config)
            loss = losses["total"]
            if config.mixed_precision:
                loss = optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, model.trainable_variables)
        gradients, _ = tf.clip_by_global_norm(gradients, config.clip_norm)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        metrics = {f"loss/{name}": value for name, value in losses.items()}
        for head in ("desc", "attn"):
            correct = correct_predictions(labels, outputs[f"{head}_logits"])
            metrics[f"train_accuracy/{head}"] = correct / global_batch
        return metrics

    def one_step(iterator) -> dict[str, tf.Tensor]:
        per_replica = strategy.run(step_fn, args=next(iterator))
        return {
            name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()
        }

    @tf.function
    def train_steps(iterator, steps: tf.Tensor) -> dict[str, tf.Tensor]:
        metrics = one_step(iterator)
        for _ in tf.range(steps - 1):
            metrics = one_step(iterator)
        return metrics

    return train_steps
