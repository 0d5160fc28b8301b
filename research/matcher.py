"""A discriminative response matcher: scores each candidate reply against the context.

An ESIM-style interaction network, small enough to rerank 10 candidates in a few milliseconds on
one CPU core: the context (last turns joined by SEP) and every candidate are embedded and run
through one GRU (both initialized from the bundled seq2seq model's embedding and encoder), each
candidate token attends over the context tokens and each context token over the candidate's,
the aligned pairs are composed (``[h, a, h - a, h * a]`` through a dense layer) and max/mean
pooled, and an MLP turns the pooled vectors into a score. A linear term over a few per-candidate
features is added: the reply's log length and, only when ``lexical_features`` is on, its word
overlap with the context (the signal the BM25-negative validation's construction gives away).

A matcher directory holds ``config.json`` (``MatcherConfig``), ``vocab.json`` (the seq2seq
vocabulary it was trained with), ``model.weights.h5`` (Keras weights) and ``training.json``;
nothing is pickled. TensorFlow is imported only by the functions that build the network.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alime.seq2seq.vocab import NUM_RESERVED, PAD_ID, Vocabulary

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "training.json"
MATCHER_DIR = "matcher"  # default place of a model directory's matcher
_FORMAT = "alime-matcher-1"
_MASKED = -1e9
ENCODERS = ("conv", "gru")


@dataclass(frozen=True)
class MatcherConfig:
    """The matcher's shape and input encoding, saved as ``config.json``.

    Attributes:
        vocab_size: ids, reserved ones included (the seq2seq vocabulary's size).
        embed_dim: word embedding size (the seq2seq model's, to reuse its embedding).
        hidden_dim: GRU size (the seq2seq encoder's, to reuse its weights).
        proj_dim: size of the attention projection and of the composed vectors.
        mlp_dim: hidden size of the scoring MLP.
        dropout: dropout on the composed vectors during training.
        context_turns: last turns (the query included) that form the context.
        max_context_len: context ids kept (the newest).
        max_response_len: candidate ids kept (the first).
        lexical_features: add the candidate's word overlap with the context as features.
        encoder: "gru" (the seq2seq encoder's GRU, copied and kept frozen by default) or "conv"
            (a trainable width-3 convolution over the embeddings).
    """

    vocab_size: int
    embed_dim: int = 128
    hidden_dim: int = 128
    proj_dim: int = 64
    mlp_dim: int = 64
    dropout: float = 0.2
    context_turns: int = 3
    max_context_len: int = 45
    max_response_len: int = 30
    lexical_features: bool = False
    encoder: str = "gru"

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {self.encoder!r}; valid: {list(ENCODERS)}")
        for name in (
            "vocab_size",
            "embed_dim",
            "hidden_dim",
            "proj_dim",
            "mlp_dim",
            "context_turns",
            "max_context_len",
            "max_response_len",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def max_source_len(self) -> int:
        """``max_context_len`` under the seq2seq config's name (``encode_source`` reads it)."""
        return self.max_context_len

    @property
    def n_features(self) -> int:
        return 1 + (3 if self.lexical_features else 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "config") -> MatcherConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown MatcherConfig key(s) {unknown}")
        return cls(**data)


# ---------------------------------------------------------------- text to ids and features


def encode_context(
    turns: Sequence[Sequence[str]], vocab: Vocabulary, config: MatcherConfig
) -> list[int]:
    """The last ``context_turns`` tokenized turns joined by SEP, the newest ids kept (as the
    seq2seq source)."""
    from alime.seq2seq.data import encode_source

    return encode_source(turns, vocab, config)


def encode_response(tokens: Sequence[str], vocab: Vocabulary, config: MatcherConfig) -> list[int]:
    """A candidate's ids, cut at ``max_response_len``."""
    return vocab.encode(tokens)[: config.max_response_len]


def _words(ids: Sequence[int]) -> set[int]:
    return {i for i in ids if i >= NUM_RESERVED}  # no padding, unknown or separators


def candidate_features(
    context: Sequence[int], responses: Sequence[Sequence[int]], lexical: bool
) -> np.ndarray:
    """Per-candidate features [k, F]: log(1 + length); with ``lexical`` also the share of the
    candidate's distinct words found in the context, log(1 + that count) and the share minus
    its mean over the group."""
    ctx = _words(context)
    rows = []
    for r in responses:
        words = _words(r)
        common = len(words & ctx)
        rows.append([math.log1p(len(r)), common / max(1, len(words)), math.log1p(common)])
    feats = np.asarray(rows, np.float32).reshape(len(responses), 3)
    if not lexical:
        return feats[:, :1]
    centred = feats[:, 1:2] - feats[:, 1:2].mean(axis=0, keepdims=True)
    return np.concatenate([feats, centred], axis=1)


def pad_ids(rows: Sequence[Sequence[int]], width: int | None = None) -> np.ndarray:
    """Right-padded int32 [n, width] (width: the longest row, at least 1)."""
    width = width or max([1, *(len(r) for r in rows)])
    out = np.full((len(rows), width), PAD_ID, np.int32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r[:width]
    return out


# ---------------------------------------------------------------- the network


def build_network(config: MatcherConfig):
    """The Keras matcher with its variables created."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import tensorflow as tf

    class MatchNet(keras.Model):
        """scores [b, k] for contexts [b, lc], candidates [b, k, lr] and features [b, k, f]."""

        def __init__(self, c: MatcherConfig, **kwargs) -> None:
            super().__init__(**kwargs)
            self.config = c
            self.embedding = keras.layers.Embedding(c.vocab_size, c.embed_dim, name="embedding")
            if c.encoder == "gru":
                self.encoder = keras.layers.GRU(c.hidden_dim, return_sequences=True, name="encoder")
            else:
                self.encoder = keras.layers.Conv1D(
                    c.hidden_dim, 3, padding="same", activation="relu", name="encoder"
                )
            self.attend_proj = keras.layers.Dense(c.proj_dim, use_bias=False, name="attend_proj")
            self.compose = keras.layers.Dense(c.proj_dim, activation="relu", name="compose")
            self.hidden = keras.layers.Dense(c.mlp_dim, activation="relu", name="hidden")
            self.out = keras.layers.Dense(1, name="out")
            self.feature_weights = keras.layers.Dense(1, use_bias=False, name="feature_weights")
            self.dropout = keras.layers.Dropout(c.dropout)

        def get_config(self) -> dict:
            return self.config.to_dict()

        def _encode(self, ids, training):
            mask = tf.not_equal(ids, PAD_ID)
            x = self.embedding(ids)
            if self.config.encoder == "gru":
                h = self.encoder(x, mask=mask, training=training)
            else:
                h = self.encoder(x * tf.cast(mask, x.dtype)[..., None])
            return tf.concat([x, h], axis=-1), mask

        def _compose_pool(self, h, aligned, mask, training):
            m = self.compose(tf.concat([h, aligned, h - aligned, h * aligned], axis=-1))
            m = self.dropout(m, training=training)
            fmask = tf.cast(mask, m.dtype)[..., None]
            count = tf.maximum(tf.reduce_sum(fmask, axis=1), 1.0)
            mean = tf.reduce_sum(m * fmask, axis=1) / count
            # relu outputs are >= 0, so masking to 0 keeps the max of the real positions
            return tf.concat([tf.reduce_max(m * fmask, axis=1), mean], axis=-1)

        def call(self, inputs, training: bool = False):
            context, responses, features = inputs
            b, k = tf.shape(responses)[0], tf.shape(responses)[1]
            flat = tf.reshape(responses, [b * k, tf.shape(responses)[2]])
            hc, mc = self._encode(context, training)  # [b, lc, d]
            hr, mr = self._encode(flat, training)  # [bk, lr, d]
            hc, mc = tf.repeat(hc, k, axis=0), tf.repeat(mc, k, axis=0)
            pc, pr = self.attend_proj(hc), self.attend_proj(hr)
            energy = tf.matmul(pr, pc, transpose_b=True) / math.sqrt(self.config.proj_dim)
            valid = tf.logical_and(mr[:, :, None], mc[:, None, :])  # [bk, lr, lc]
            energy = tf.where(valid, energy, _MASKED)
            vf = tf.cast(valid, energy.dtype)
            to_context = tf.nn.softmax(energy, axis=2) * vf
            to_response = tf.nn.softmax(energy, axis=1) * vf
            r_aligned = tf.matmul(to_context, hc)  # [bk, lr, d]
            c_aligned = tf.matmul(to_response, hr, transpose_a=True)  # [bk, lc, d]
            pooled = tf.concat(
                [
                    self._compose_pool(hr, r_aligned, mr, training),
                    self._compose_pool(hc, c_aligned, mc, training),
                ],
                axis=-1,
            )
            score = self.out(self.dropout(self.hidden(pooled), training=training))[:, 0]
            score = tf.reshape(score, [b, k])
            return score + self.feature_weights(features)[..., 0]

    net = MatchNet(config)
    net(
        (
            np.zeros((1, 1), np.int32),
            np.zeros((1, 1, 1), np.int32),
            np.zeros((1, 1, config.n_features), np.float32),
        )
    )
    return net


def init_from_seq2seq(net, seq2seq_model) -> None:
    """Copy the seq2seq model's embedding (and, with the "gru" encoder, its encoder GRU's
    weights) into the matcher.

    Raises:
        ValueError: the shapes differ (the matcher must be built with the seq2seq's sizes).
    """
    pairs = [(net.embedding, seq2seq_model.embedding)]
    if net.config.encoder == "gru":
        pairs.append((net.encoder, seq2seq_model.encoder_rnn))
    for mine, theirs in pairs:
        src = theirs.get_weights()
        dst = mine.get_weights()
        if [w.shape for w in src] != [w.shape for w in dst]:
            raise ValueError(
                f"cannot reuse the seq2seq {theirs.name}: shapes "
                f"{[w.shape for w in src]} vs the matcher's {[w.shape for w in dst]}"
            )
        mine.set_weights(src)


# ---------------------------------------------------------------- directory and scorer


@dataclass
class LoadedMatcher:
    """A matcher rebuilt from its directory."""

    config: MatcherConfig
    vocab: Vocabulary
    net: Any
    metadata: dict
    path: Path | None = None

    def __post_init__(self) -> None:
        import tensorflow as tf

        spec = [
            tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None, None, None], tf.int32),
            tf.TensorSpec([None, None, self.config.n_features], tf.float32),
        ]
        self._score = tf.function(
            lambda c, r, f: self.net((c, r, f), training=False), input_signature=spec
        )

    def score_ids(self, context: Sequence[int], responses: Sequence[Sequence[int]]) -> np.ndarray:
        """Scores [k] of k candidates' ids against one context's ids."""
        if not responses:
            return np.zeros(0, np.float32)
        feats = candidate_features(context, responses, self.config.lexical_features)
        out = self._score(pad_ids([context]), pad_ids(responses)[None], feats[None])
        return out.numpy()[0]


def save_matcher_dir(
    path: str | Path, net, vocab: Vocabulary, metadata: dict | None = None
) -> None:
    """Write config, vocabulary, weights and (when given) metadata into ``path``."""
    from alime import __version__

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {"format": _FORMAT, "alime_version": __version__, **net.config.to_dict()}
    (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    vocab.save(path / VOCAB_FILE)
    net.save_weights(str(path / WEIGHTS_FILE))
    if metadata is not None:
        (path / METADATA_FILE).write_text(
            json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def load_matcher_dir(path: str | Path) -> LoadedMatcher:
    """Rebuild a saved matcher exactly.

    Raises:
        ValueError: a missing file, another format, or a vocabulary that does not fit the config.
    """
    path = Path(path)
    for name in (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE):
        if not (path / name).is_file():
            raise ValueError(
                f"{path}: not a matcher directory (missing {name}); train one with "
                "'python -m research.train_matcher'"
            )
    data = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    if data.pop("format", None) != _FORMAT:
        raise ValueError(f"{path / CONFIG_FILE}: not an {_FORMAT} config")
    data.pop("alime_version", None)
    config = MatcherConfig.from_dict(data, str(path / CONFIG_FILE))
    vocab = Vocabulary.load(path / VOCAB_FILE)
    if len(vocab) != config.vocab_size:
        raise ValueError(
            f"{path}: vocab.json has {len(vocab)} ids, config says {config.vocab_size}"
        )
    net = build_network(config)
    net.load_weights(str(path / WEIGHTS_FILE))
    meta = path / METADATA_FILE
    metadata = json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() else {}
    return LoadedMatcher(config, vocab, net, metadata, path)


class MatchScorer:
    """``alime.types.Scorer`` over a loaded matcher (higher is better; an unbounded logit).

    Args:
        matcher: from ``load_matcher_dir``.
        tokenize: text to tokens (the shared ``TextPipeline.tokenize``, as in training).
    """

    def __init__(self, matcher: LoadedMatcher, tokenize) -> None:
        self.matcher = matcher
        self.tokenize = tokenize

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        m = self.matcher
        ctx = encode_context([self.tokenize(t) for t in [*context, query]], m.vocab, m.config)
        responses = [encode_response(self.tokenize(a), m.vocab, m.config) for a in answers]
        return [float(x) for x in m.score_ids(ctx, responses)]
