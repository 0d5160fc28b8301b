"""Binarized weights: sign x per-row scale, packed 1 bit per weight, straight-through fine-tuning.

A weight matrix ``W: [n_in, n_out]`` (the layout of Keras kernels, ``y = x W``) becomes
``sign(W) * s`` with one scale per output unit, ``s_j = mean_i |W_ij|`` (a row of ``Wᵀ``): the
scale that minimizes ``||W - s sign(W)||²`` for each row (XNOR-Net). Signs pack 8 to a byte, so
a float32 matrix shrinks about 32x (plus ``n_out`` float32 scales).

Fine-tuning uses the straight-through estimator (STE): the forward pass runs on the binarized
weights, the gradient there is applied to latent float weights as if binarization were the
identity (optionally zeroed where ``|W| > clip``). :class:`SteTrainer` does this for any Keras
model and loss by swapping the binarized values into the variables around the forward and
backward pass, so the network code does not change.

Speed: on CPU this module provides no bit-serial kernel; the packed form cuts the bytes of
weights read per step (what bounds a batch-1 GRU step), which is the labelled proxy reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


def scales_of(weights: np.ndarray) -> np.ndarray:
    """Per-output-unit scales ``mean |W|`` over the input axis (axis 0) of ``[n_in, n_out]``."""
    weights = np.asarray(weights, np.float32)
    if weights.ndim != 2:
        raise ValueError(f"expected a [n_in, n_out] matrix, got shape {weights.shape}")
    return np.abs(weights).mean(axis=0)


def binarize(weights: np.ndarray) -> np.ndarray:
    """``sign(W) * scale`` (``sign(0) = +1``) as float32, the same shape as ``weights``."""
    weights = np.asarray(weights, np.float32)
    return np.where(weights >= 0, 1.0, -1.0).astype(np.float32) * scales_of(weights)[None, :]


def binarize_tensor(weights: tf.Tensor) -> tf.Tensor:
    """:func:`binarize` in TensorFlow (for use inside traced steps)."""
    scale = tf.reduce_mean(tf.abs(weights), axis=0, keepdims=True)
    return tf.where(weights >= 0, scale, -scale)


@dataclass(frozen=True)
class PackedMatrix:
    """A binarized matrix in its storage form.

    Attributes:
        bits: ``np.packbits`` of ``W >= 0`` (row-major, 1 = positive).
        scales: ``[n_out]`` float32.
        shape: ``(n_in, n_out)``.
    """

    bits: np.ndarray
    scales: np.ndarray
    shape: tuple[int, int]

    @property
    def nbytes(self) -> int:
        """Stored bytes (bits and scales)."""
        return int(self.bits.nbytes + self.scales.nbytes)


def pack(weights: np.ndarray) -> PackedMatrix:
    """Binarize and bit-pack ``[n_in, n_out]`` weights."""
    weights = np.asarray(weights, np.float32)
    scales = scales_of(weights)
    bits = np.packbits((weights >= 0).reshape(-1))
    return PackedMatrix(bits, scales.astype(np.float32), (weights.shape[0], weights.shape[1]))


def unpack(packed: PackedMatrix) -> np.ndarray:
    """The float32 matrix ``sign * scale`` a :class:`PackedMatrix` stands for."""
    count = packed.shape[0] * packed.shape[1]
    signs = np.unpackbits(packed.bits, count=count).reshape(packed.shape).astype(np.float32)
    return (signs * 2.0 - 1.0) * packed.scales[None, :]


def size_ratio(matrices: Sequence[np.ndarray]) -> float:
    """float32 bytes of ``matrices`` over their packed bytes."""
    fp32 = sum(np.asarray(m).size * 4 for m in matrices)
    packed = sum(pack(m).nbytes for m in matrices)
    return fp32 / packed


def assign_binarized(variables: Sequence) -> list[np.ndarray]:
    """Overwrite each 2-D variable with its binarized value; returns the float originals."""
    originals = []
    for var in variables:
        value = np.asarray(var.numpy() if hasattr(var, "numpy") else var)
        originals.append(value)
        var.assign(binarize(value))
    return originals


class SteTrainer:
    """Straight-through fine-tuning of a model whose ``binary`` variables are binarized.

    Each step swaps the binarized values into the ``binary`` variables, computes the loss and
    the gradients of every trainable variable there, restores the latent float values, zeroes
    the gradient where ``|latent| > clip`` (when ``clip`` is set) and applies the optimizer to the
    latent values.

    Args:
        binary: The variables to binarize (2-D kernels).
        trainable: Every variable to update (``binary`` included).
        loss_fn: ``loss_fn(batch) -> scalar`` running the model.
        optimizer: A Keras optimizer.
        clip: STE clipping threshold, or ``None``.
    """

    def __init__(
        self,
        binary: Sequence,
        trainable: Sequence,
        loss_fn: Callable[[object], tf.Tensor],
        optimizer,
        clip: float | None = None,
    ) -> None:
        ids = {id(v) for v in trainable}
        if any(id(v) not in ids for v in binary):
            raise ValueError("every binarized variable must also be trainable")
        self.binary = list(binary)
        self.trainable = list(trainable)
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.clip = clip
        self._step = tf.function(self._train_step)
        self._eval = tf.function(self._binary_loss)

    def _swap_in(self) -> list[tf.Tensor]:
        latents = [tf.identity(v) for v in self.binary]
        for var, latent in zip(self.binary, latents, strict=True):
            var.assign(binarize_tensor(latent))
        return latents

    def _restore(self, latents: Sequence[tf.Tensor]) -> None:
        for var, latent in zip(self.binary, latents, strict=True):
            var.assign(latent)

    def _train_step(self, batch) -> tf.Tensor:
        latents = self._swap_in()
        with tf.GradientTape() as tape:
            loss = self.loss_fn(batch)
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.trainable)]
        self._restore(latents)
        if self.clip is not None:
            by_id = {id(v): latent for v, latent in zip(self.binary, latents, strict=True)}
            grads = [
                tf.where(tf.abs(by_id[id(v)]) > self.clip, tf.zeros_like(g), g)
                if id(v) in by_id
                else g
                for g, v in zip(grads, self.trainable, strict=True)
            ]
        self.optimizer.apply(grads, self.trainable)
        return loss

    def _binary_loss(self, batch) -> tf.Tensor:
        latents = self._swap_in()
        loss = self.loss_fn(batch)
        self._restore(latents)
        return loss

    def step(self, batch) -> float:
        """One STE step; returns the loss at the binarized weights before the update."""
        return float(self._step(batch))

    def binary_loss(self, batch) -> float:
        """The loss with the binarized weights (latent weights left unchanged)."""
        return float(self._eval(batch))
