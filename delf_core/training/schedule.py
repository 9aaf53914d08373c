"""The learning rate: linear decay from `initial_lr` to 0 over `max_iters` steps."""

from __future__ import annotations

import keras


def linear_decay(
    initial_lr: float, max_iters: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """lr(step) = initial_lr * (1 - step / max_iters), as the original sets before each step.

    A schedule of the optimizer's own step counter, so a run restored from a checkpoint
    resumes with the learning rate it stopped at.
    """
    return keras.optimizers.schedules.PolynomialDecay(
        initial_learning_rate=initial_lr, decay_steps=max_iters, end_learning_rate=0.0, power=1.0
    )
