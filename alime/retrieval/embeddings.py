"""Question embeddings from the project's own trained seq2seq encoder.

A question is run through the encoder (embedding + GRU) and its vector is a masked mean over the
source positions, L2-normalized so that inner product is cosine similarity. Two poolings exist:
the mean of the GRU outputs (context-aware) and the mean of the word embeddings (a bag of words
that ignores word order, hence robust to reordered and dropped words); ``concat`` joins both
halves, each normalized, so neither dominates the cosine.

Every vector is tagged with the *identity* of the encoder that produced it (a hash of the weights
file, the config, the vocabulary and the pooling), which the dense index stores and checks: vectors
from another model are not comparable, so a mismatch forces a rebuild instead of silent garbage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from alime.seq2seq.model_dir import CONFIG_FILE, VOCAB_FILE
from alime.seq2seq.vocab import NUM_RESERVED, PAD_ID
from pluto.choices import parse_choice


class Embedder(Protocol):
    """Maps texts to L2-normalized float32 vectors ``[n, dim]``."""

    @property
    def identity(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class Pooling(str, Enum):
    """How a question's encoder positions become one vector."""

    STATES = "states"  # masked mean of the GRU outputs
    WORDS = "words"  # masked mean of the word embeddings
    CONCAT = "concat"  # both, each normalized, side by side


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows (no known word) stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def sif_weights(vocab_size: int, a: float) -> np.ndarray:
    """Smooth inverse frequency weights ``a / (a + p(w))`` per id (0 for reserved ids).

    The vocabulary is ranked by training frequency, so ``p(w)`` is estimated from the rank with
    Zipf's law (``p ~ 1 / (rank * H_V)``): frequent function words ("的", "吗", "亲") weigh little
    and content words weigh about 1, without any corpus statistics beyond the model itself.
    ``a <= 0`` gives uniform weights.
    """
    weights = np.zeros(vocab_size, np.float32)
    rank = np.arange(1, vocab_size - NUM_RESERVED + 1, dtype=np.float64)
    if a <= 0:
        weights[NUM_RESERVED:] = 1.0
        return weights
    p = 1.0 / (rank * (np.log(vocab_size) + 0.5772))
    weights[NUM_RESERVED:] = a / (a + p)
    return weights


def _weight_files(model_dir: Path) -> list[Path]:
    """The files holding a model directory's weights: fp32 Keras weights, or the int8 tensors
    listed by ``quantization.json`` (an int8 directory has different weights, so other vectors)."""
    from alime.seq2seq.model_dir import weight_files

    return weight_files(model_dir)


def model_identity(model_dir: str | Path, pooling: Pooling | str, sif_a: float = 0.0) -> str:
    """A short hash of everything that determines the vectors: weights, config, vocab, pooling."""
    digest = hashlib.sha256()
    for path in _weight_files(Path(model_dir)) + [
        Path(model_dir, CONFIG_FILE),
        Path(model_dir, VOCAB_FILE),
    ]:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    digest.update(f"{Pooling(pooling).value}/sif={sif_a:g}".encode())
    return "seq2seq-" + digest.hexdigest()[:16]


class Seq2SeqEmbedder:
    """Embeds questions with a trained :class:`~alime.seq2seq.model.Seq2SeqModel`'s encoder.

    The model is loaded on first use (:meth:`warm_up`), not in ``__init__``, so building the
    object is cheap and ``import alime`` stays light; an int8 model directory is pooled in numpy
    (no TensorFlow), an fp32 one in a traced TensorFlow function.

    Args:
        model_dir: A directory written by ``save_model_dir``.
        tokenize: Text -> tokens, the same tokenizer the model was trained with.
        pooling: How positions are pooled.
        batch_size: Questions per encoder call.
        sif_a: Smooth-inverse-frequency constant for the word mean (see :func:`sif_weights`);
            0 averages words uniformly.
    """

    def __init__(
        self,
        model_dir: str | Path,
        tokenize: Callable[[str], list[str]],
        pooling: Pooling | str = Pooling.WORDS,
        batch_size: int = 256,
        sif_a: float = 0.01,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.pooling = parse_choice(Pooling, pooling, "pooling")
        self.model_dir = Path(model_dir)
        self.tokenize = tokenize
        self.batch_size = batch_size
        self.sif_a = float(sif_a)
        self._identity = model_identity(self.model_dir, self.pooling, self.sif_a)
        self._loaded = None
        self._pool = None
        self._table: np.ndarray | None = None

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def dim(self) -> int:
        cfg = self.warm_up().config
        sizes = {
            Pooling.STATES: cfg.hidden_dim,
            Pooling.WORDS: cfg.embed_dim,
            Pooling.CONCAT: cfg.hidden_dim + cfg.embed_dim,
        }
        return sizes[self.pooling]

    def warm_up(self):
        """Load the model and trace the pooling function (idempotent); returns the LoadedModel."""
        if self._loaded is None and self._warm_up_int8():
            return self._loaded
        if self._loaded is None:
            import tensorflow as tf

            from alime.seq2seq.model_dir import load_model_dir

            loaded = load_model_dir(self.model_dir)
            model = loaded.model
            self._weights = sif_weights(loaded.config.vocab_size, self.sif_a)
            weights = tf.constant(self._weights)

            def pool(ids):
                mask = tf.cast(tf.not_equal(ids, PAD_ID), tf.float32)[:, :, None]
                count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
                parts = []
                if self.pooling is not Pooling.WORDS:  # the GRU is the costly part: skip it
                    parts.append(tf.reduce_sum(model.encode(ids).values * mask, axis=1) / count)
                if self.pooling is not Pooling.STATES:
                    # Unknown words (typos, rare words) all share UNK's vector: it carries no
                    # meaning, only a direction every noisy query would share, so leave it out.
                    # (sif_weights gives reserved ids weight 0.)
                    weight = tf.gather(weights, ids)[:, :, None]
                    n_known = tf.maximum(
                        tf.reduce_sum(tf.cast(weight > 0, tf.float32), axis=1), 1.0
                    )
                    parts.append(tf.reduce_sum(model.embedding(ids) * weight, axis=1) / n_known)
                return parts

            self._pool = tf.function(pool, input_signature=[tf.TensorSpec([None, None], tf.int32)])
            # WORDS pooling needs no network pass: averaging rows of the trained embedding table
            # in numpy gives the same vectors without a TensorFlow call per query.
            self._table = model.embedding.embeddings.numpy() * self._weights[:, None]
            self._loaded = loaded
        return self._loaded

    def _warm_up_int8(self) -> bool:
        """An int8 model directory: the same pooling in numpy on the serving model the reranker
        shares (``load_int8_model_dir``), without TensorFlow. False for an fp32 directory."""
        from alime.seq2seq.model_dir import is_quantized_dir
        from alime.seq2seq.quantized import load_int8_model_dir

        if not is_quantized_dir(self.model_dir):
            return False
        loaded = load_int8_model_dir(self.model_dir)
        net = loaded.inference.net
        self._weights = sif_weights(loaded.config.vocab_size, self.sif_a)

        def pool(ids: np.ndarray) -> list[np.ndarray]:
            mask = (ids != PAD_ID)[:, :, None].astype(np.float32)
            count = np.maximum(mask.sum(axis=1), 1.0)
            parts = []
            if self.pooling is not Pooling.WORDS:
                parts.append((net.encode(ids.astype(np.int64)).values * mask).sum(axis=1) / count)
            if self.pooling is not Pooling.STATES:  # unknown words weigh 0, as in the traced pool
                weight = self._weights[ids][:, :, None]
                n_known = np.maximum((weight > 0).sum(axis=1), 1.0)
                parts.append((net.embeddings[ids] * weight).sum(axis=1) / n_known)
            return parts

        self._pool = pool
        self._table = net.embeddings * self._weights[:, None]
        self._loaded = loaded
        return True

    def token_ids(self, text: str) -> list[int]:
        """The model's source ids for one question (no context turns, truncated like training)."""
        m = self.warm_up()
        return m.vocab.encode(self.tokenize(text))[-m.config.max_source_len :]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized embeddings ``[len(texts), dim]`` (float32), in the order given."""
        self.warm_up()
        ids = [self.token_ids(t) for t in texts]
        return self.embed_ids(ids)

    def embed_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Embeddings of already-encoded questions; batches group similar lengths to pad less."""
        self.warm_up()
        if self.pooling is Pooling.WORDS:
            return self._mean_words(ids)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(1, max(len(ids[i]) for i in rows))
            batch = np.full((len(rows), width), PAD_ID, dtype=np.int32)
            for r, i in enumerate(rows):
                batch[r, : len(ids[i])] = ids[i]
            # Each part normalized before joining, so both weigh the same in the cosine.
            parts = [l2_normalize(np.asarray(t)) for t in self._pool(batch)]
            out[rows] = l2_normalize(np.concatenate(parts, axis=1)) if len(parts) > 1 else parts[0]
        return out

    def _mean_words(self, ids: Sequence[Sequence[int]], block: int = 20_000) -> np.ndarray:
        """Weighted mean of the known words' embedding rows (as the traced ``pool``), in blocks
        of questions so the gathered rows stay small."""
        out = np.zeros((len(ids), self._table.shape[1]), np.float32)
        for start in range(0, len(ids), block):
            rows = [[i for i in row if i >= NUM_RESERVED] for row in ids[start : start + block]]
            counts = np.fromiter((len(r) for r in rows), np.int64, len(rows))
            flat = np.fromiter((i for r in rows for i in r), np.int64, int(counts.sum()))
            has = counts > 0
            if not has.any():
                continue
            # reduceat sums each question's slice; questions without known words are skipped
            # (their starts would repeat, which reduceat does not read as an empty slice).
            starts = (np.cumsum(counts) - counts)[has]
            sums = np.add.reduceat(self._table[flat].astype(np.float64), starts, axis=0)
            out[start : start + len(rows)][has] = sums / counts[has, None]
        return l2_normalize(out)
