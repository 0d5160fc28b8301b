"""Pluto: framework-level acceleration: data parallelism, model averaging, int8 quantization,
late-multiply, hybrid data/model parallelism, XLA comparison, recomputation, binarized weights.

Independent of the chatbot: nothing here imports ``alime``. This file imports no submodule, so
``import pluto`` stays cheap; ``strategy``, ``sync``, ``averaging``, ``local_optim`` and
``training`` import TensorFlow when they are imported, the others (``choices``, ``comm``,
``heuristics``, ``quantization``, ``int8_head``) do not.

Typical use::

    from pluto import strategy as pstrategy, training
    strategy = pstrategy.make_strategy(pstrategy.StrategyConfig(devices=4))
    with strategy.scope():
        model = build_model()
    trainer = training.Trainer(model, loss_fn, strategy, training.TrainConfig(mode="ma"))
    result = training.fit(trainer, dataset, steps=1000, val_dataset=val)
"""

__all__ = [
    "averaging",
    "binarize",
    "comm",
    "compilation",
    "heuristics",
    "hybrid",
    "int8_head",
    "late_multiply",
    "quantization",
    "recompute",
    "strategy",
    "sync",
    "training",
]
