"""One worker of a two-process MultiWorkerMirroredStrategy run (``TF_CONFIG`` set by the test).

Usage: ``python -m tests.pluto._multiworker OUT_DIR``; prints a JSON summary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(out_dir: str) -> None:
    """Train a tiny model with model averaging across two workers and save it from the chief."""
    from pluto.strategy import StrategyConfig, is_chief, make_strategy

    strategy = make_strategy(StrategyConfig(devices=1, use_gpus=False))
    import keras
    import tensorflow as tf

    from pluto.local_optim import OptimizerConfig
    from pluto.training import TrainConfig, Trainer, fit

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]], dtype="float32")).astype("float32")
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    trainer = Trainer(
        model,
        lambda t, p: tf.reduce_mean(tf.square(t - p)),
        strategy,
        TrainConfig(mode="ma", avg_period=3, optimizer=OptimizerConfig(learning_rate=0.05)),
    )
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16, drop_remainder=True)
    result = fit(trainer, data, steps=20, val_dataset=data, eval_every=10)
    path = Path(out_dir) / "model.weights.h5"
    wrote = trainer.save_weights(str(path))
    weights = [np.asarray(w).tolist() for w in model.get_weights()]
    print(
        json.dumps(
            {
                "replicas": trainer.replicas,
                "chief": is_chief(strategy),
                "wrote": wrote,
                "first_val": result.history[0][1],
                "final_val": result.final_val_loss,
                "weights": weights,
                "bytes": trainer.bytes_per_replica,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
