"""Train the response matcher (``research.matcher``) on a seq2seq model's training dialogues.

Only the dialogues the seq2seq model trained on are used (its ``training.json`` lists the held-out
ones, which never enter here). They are split again by conversation into the matcher's training
part and a dev part for early stopping and tuning. Each training example (every responder turn
with the turns before it, or only the final responses) becomes a group of 10 like the validation
file: the real reply plus wrong replies retrieved by BM25 from the other training dialogues'
responses (``research.validation.build_groups``), some of them optionally drawn at random.
The loss is the softmax cross-entropy of the group's scores (listwise). The dev part is scored on
two groups per dialogue: BM25 negatives only (like ``valid_bm25neg.txt``) and random ones (like
``valid_randneg.txt``); the epoch with the best mean R10@1 over the two is kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alime.evaluation.corpus import Group, read_true_rows
from alime.evaluation.heldout import heldout_lines
from alime.evaluation.metrics import rank_of_true, selection_metrics
from alime.kb.formats import EcommerceRow
from research import validation
from research.matcher import (
    METADATA_FILE,
    MatcherConfig,
    build_network,
    candidate_features,
    encode_context,
    encode_response,
    init_from_seq2seq,
    pad_ids,
    save_matcher_dir,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatcherTrainOptions:
    """Settings of ``python -m research.train_matcher``.

    Attributes:
        epochs: passes over the training groups (the best dev epoch is kept).
        batch_size: groups per step.
        learning_rate: Adam's.
        patience: stop after this many epochs without a better dev figure (0: never).
        dev_fraction: share of the training dialogues held out (by conversation) as dev.
        train_fraction: share of the remaining ones trained on (by conversation; for learning
            curves: the dev dialogues stay the same).
        random_negatives: of the 9 wrong replies of a training group, how many are random.
        context_negatives: of the 9, how many are replies of dialogues whose contexts match by
            BM25 (``bm25-context``); the rest are BM25 hits among replies (``bm25``).
        expand_turns: train on every responder turn, not only the final responses.
        train_embedding: fine-tune the embedding copied from the seq2seq model.
        train_encoder: fine-tune the GRU copied from the seq2seq encoder (about 3x slower).
        seed: split, negatives, shuffling and initialization.
        threads: TensorFlow threads (0: TensorFlow's default).
        max_minutes: do not start an epoch that would end after this many minutes (0: none).
        query_turns: turns in the BM25 query that retrieves wrong replies.
    """

    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 2
    dev_fraction: float = 0.1
    train_fraction: float = 1.0
    random_negatives: int = 3
    context_negatives: int = 0
    expand_turns: bool = True
    train_embedding: bool = False
    train_encoder: bool = False
    seed: int = 42
    threads: int = 1
    max_minutes: float = 0.0
    query_turns: int = 3

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if not 0 <= self.random_negatives <= 9:
            raise ValueError(f"random_negatives must be in [0, 9], got {self.random_negatives}")
        if not 0 <= self.context_negatives <= 9 - self.random_negatives:
            raise ValueError(
                f"context_negatives must be in [0, 9 - random_negatives], "
                f"got {self.context_negatives}"
            )


@dataclass
class MatcherTrainResult:
    out_dir: Path
    best_epoch: int
    best_dev: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------- data


def training_rows(data: str | Path, metadata: dict) -> tuple[list[EcommerceRow], set[int]]:
    """The label-1 dialogues of ``data`` that the seq2seq model trained on, and the held-out
    lines left out.

    Raises:
        ValueError: the model did not train on ``data`` or does not list its held-out dialogues
            (``alime.evaluation.heldout.heldout_lines``), or ``data`` was entirely a validation
            file.
    """
    if not Path(data).is_file():
        raise ValueError(f"no such file: {data}")
    held = heldout_lines(metadata, data)
    if held is None:
        raise ValueError(
            f"{data}: the whole file was the model's validation data; "
            "the matcher trains on the model's training dialogues only"
        )
    rows = [r for r in read_true_rows(data) if r.line not in held]
    if not rows:
        raise ValueError(f"{data}: no training dialogues left after removing the held-out ones")
    return rows, held


def split_rows(
    rows: Sequence[EcommerceRow], dev_fraction: float, seed: int
) -> tuple[list[EcommerceRow], list[EcommerceRow]]:
    """(train, dev) by conversation, as the seq2seq split (``seq2seq.data.split_dialogues``)."""
    from alime.seq2seq.data import split_dialogues

    return split_dialogues(rows, dev_fraction, seed)  # only .turns and .response are read


def expand_rows(rows: Sequence[EcommerceRow]) -> list[EcommerceRow]:
    """Every responder turn (the final response's parity, counting back) with the turns before
    it as one example; the line stays the dialogue's."""
    out = []
    for r in rows:
        utterances = [*r.turns, r.response]
        last = len(utterances) - 1
        for i in range(last % 2 or 2, last + 1, 2):
            if utterances[i - 1] and utterances[i]:
                out.append(EcommerceRow(1, tuple(utterances[:i]), utterances[i], r.line))
    return out


@dataclass(frozen=True)
class EncodedGroups:
    """Groups as ids: contexts [n] lists, candidates [n][k] lists, true positions [n]."""

    contexts: list[list[int]]
    candidates: list[list[list[int]]]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.contexts)


def encode_groups(
    groups: Sequence[Group], tokenize: Callable[[str], list[str]], vocab, config: MatcherConfig
) -> EncodedGroups:
    """Tokenize and encode every group (each distinct text once)."""
    cache: dict[str, list[str]] = {}

    def tok(text: str) -> list[str]:
        if text not in cache:
            cache[text] = tokenize(text)
        return cache[text]

    contexts = [encode_context([tok(t) for t in g.turns], vocab, config) for g in groups]
    candidates = [[encode_response(tok(r), vocab, config) for r in g.responses] for g in groups]
    return EncodedGroups(contexts, candidates, np.asarray([g.true_index for g in groups], np.int32))


def make_groups(
    rows: Sequence[EcommerceRow],
    pool: Sequence[str],
    analyze,
    random_negatives: int,
    seed: int,
    query_turns: int,
    progress: bool,
    context_negatives: int = 0,
    sources: Sequence[EcommerceRow] | None = None,
) -> list[Group]:
    """Groups of 10 like the validation files: of the 9 wrong replies ``random_negatives`` are
    random, ``context_negatives`` come from the context index over ``sources``, the rest are
    BM25 hits among ``pool``."""
    options = validation.ValidationOptions(
        validation.NegativeKind.BM25,
        query_turns,
        seed,
        random_negatives=random_negatives,
        context_negatives=context_negatives,
    )
    return validation.build_groups(rows, pool, analyze, options, progress, sources=sources).groups


def batch_arrays(data: EncodedGroups, index: Sequence[int], n_features: int, lexical: bool):
    """(contexts [b, lc], candidates [b, k, lr], features [b, k, f], labels [b]) for ``index``."""
    contexts = pad_ids([data.contexts[i] for i in index])
    k = len(data.candidates[index[0]])
    width = max([1, *(len(r) for i in index for r in data.candidates[i])])
    candidates = np.stack([pad_ids(data.candidates[i], width) for i in index]).reshape(
        len(index), k, width
    )
    features = np.stack(
        [candidate_features(data.contexts[i], data.candidates[i], lexical) for i in index]
    ).astype(np.float32)
    assert features.shape[-1] == n_features
    return contexts, candidates, features, data.labels[list(index)]


# ---------------------------------------------------------------- loop


def evaluate_groups(
    score_fn, data: EncodedGroups, config: MatcherConfig, batch_size: int = 64
) -> dict:
    """R10@1/2/5 and MRR (ties against the model) plus the mean listwise loss."""
    ranks, losses = [], []
    for start in range(0, len(data), batch_size):
        index = list(range(start, min(len(data), start + batch_size)))
        c, r, f, y = batch_arrays(data, index, config.n_features, config.lexical_features)
        scores = np.asarray(score_fn(c, r, f), np.float64)
        for row, label in zip(scores, y, strict=True):
            ranks.append(rank_of_true(row.tolist(), int(label)))
            shifted = row - row.max()
            losses.append(float(np.log(np.exp(shifted).sum()) - shifted[label]))
    return {**selection_metrics(ranks, 10), "loss": float(np.mean(losses))}


def fit(
    net,
    train: EncodedGroups,
    config: MatcherConfig,
    options: MatcherTrainOptions,
    dev_sets: dict[str, EncodedGroups] | None = None,
    progress: bool = True,
    on_best: Callable[[int, dict], None] | None = None,
) -> tuple[list[dict], int, dict]:
    """Train ``net`` with the listwise softmax loss; returns (history, best epoch, best dev).

    Without dev sets every epoch counts as the best (the last one is kept). ``on_best`` is
    called after each epoch that improves the dev figure (e.g. to save the weights).
    """
    import tensorflow as tf
    from tqdm import tqdm

    from alime.seq2seq.training import out_of_time

    net.embedding.trainable = options.train_embedding
    net.encoder.trainable = options.train_encoder
    import keras

    optimizer = keras.optimizers.Adam(options.learning_rate, global_clipnorm=5.0)
    spec = [
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None, None], tf.int32),
        tf.TensorSpec([None, None, config.n_features], tf.float32),
        tf.TensorSpec([None], tf.int32),
    ]

    @tf.function(input_signature=spec)
    def step(c, r, f, y):
        with tf.GradientTape() as tape:
            logits = net((c, r, f), training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
        grads = tape.gradient(loss, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables, strict=True))
        return loss

    score = tf.function(lambda c, r, f: net((c, r, f), training=False), input_signature=spec[:3])
    rng = np.random.default_rng(options.seed)
    history: list[dict] = []
    best_epoch, best_value, best_dev, stale = 0, -1.0, {}, 0
    start = time.time()
    for epoch in range(1, options.epochs + 1):
        per_epoch = (time.time() - start) / len(history) if history else 0.0
        if history and out_of_time(options.max_minutes, start, per_epoch):
            log.warning("stopping before epoch %d: it would exceed --max-minutes", epoch)
            break
        order = rng.permutation(len(train))
        batches = [
            order[i : i + options.batch_size] for i in range(0, len(order), options.batch_size)
        ]
        total = 0.0
        bar = tqdm(
            batches,
            desc=f"matcher epoch {epoch}/{options.epochs}",
            unit="batch",
            disable=not progress,
        )
        for n, index in enumerate(bar, 1):
            c, r, f, y = batch_arrays(train, index, config.n_features, config.lexical_features)
            total += float(step(c, r, f, y))
            if n % 20 == 0:
                bar.set_postfix(loss=f"{total / n:.4f}")
        record = {
            "epoch": epoch,
            "train_loss": total / max(1, len(batches)),
            "seconds": round(time.time() - start, 1),
        }
        for name, data in (dev_sets or {}).items():
            record[name] = evaluate_groups(score, data, config)
        value = float(np.mean([record[n]["r10@1"] for n in dev_sets])) if dev_sets else epoch
        record["dev_mean_r10@1"] = value if dev_sets else None
        history.append(record)
        log.info("matcher epoch %d: %s", epoch, record)
        if progress:
            tqdm.write(
                f"epoch {epoch}: train loss {record['train_loss']:.4f}"
                + "".join(
                    f", {n} R10@1 {record[n]['r10@1']:.3f} loss {record[n]['loss']:.3f}"
                    for n in dev_sets or {}
                )
            )
        if value > best_value:
            best_epoch, best_value, stale = epoch, value, 0
            best_dev = {n: record[n] for n in dev_sets or {}}
            if on_best:
                on_best(epoch, record)
        else:
            stale += 1
            if options.patience and stale >= options.patience:
                break
    return history, best_epoch, best_dev


def train_matcher(
    data: str | Path,
    model_dir: str | Path,
    out_dir: str | Path,
    options: MatcherTrainOptions | None = None,
    lexical_features: bool = False,
    text_config=None,
    progress: bool = True,
    encoder: str = "gru",
) -> MatcherTrainResult:
    """Train a matcher on ``model_dir``'s training dialogues of ``data``; write ``out_dir``.

    ``lexical_features`` and ``encoder`` are ``MatcherConfig`` fields; the other sizes follow
    the seq2seq model, whose embedding (and GRU encoder) initialize the matcher.

    Raises:
        ValueError: see ``training_rows``; or an empty dev or training part.
    """
    from alime.config import AppConfig
    from alime.seq2seq.model_dir import load_model_dir, read_metadata
    from alime.seq2seq.training import set_threads
    from alime.text import TextPipeline

    options = options or MatcherTrainOptions()
    set_threads(options.threads)
    wall = time.monotonic()
    metadata = read_metadata(model_dir)
    rows, held = training_rows(data, metadata)
    train_rows, dev_rows = split_rows(rows, options.dev_fraction, options.seed)
    if options.train_fraction < 1.0:
        # the kept part of a by-conversation split (it keeps the long stock-opening chains)
        train_rows = split_rows(train_rows, 1.0 - options.train_fraction, options.seed + 1)[0]
    if not train_rows or not dev_rows:
        raise ValueError("the dev split left no training or no dev dialogues")
    pipeline = TextPipeline(text_config or AppConfig().text)
    seq2seq = load_model_dir(model_dir)
    config = MatcherConfig(
        vocab_size=seq2seq.config.vocab_size,
        embed_dim=seq2seq.config.embed_dim,
        hidden_dim=seq2seq.config.hidden_dim,
        context_turns=seq2seq.config.context_turns,
        lexical_features=lexical_features,
        encoder=encoder,
    )
    examples = expand_rows(train_rows) if options.expand_turns else list(train_rows)
    train_pool = validation.response_pool(train_rows)
    all_pool = validation.response_pool(rows)  # as in validation: the file's other replies
    groups = make_groups(
        examples,
        train_pool,
        pipeline.index_terms,
        options.random_negatives,
        options.seed,
        options.query_turns,
        progress,
        options.context_negatives,
        sources=train_rows,
    )
    # the three constructions of the held-out files (docs/evaluation.md), on the dev dialogues
    dev_groups = {
        "dev_bm25neg": make_groups(
            dev_rows,
            all_pool,
            pipeline.index_terms,
            0,
            options.seed + 1,
            options.query_turns,
            progress,
        ),
        "dev_ctxneg": make_groups(
            dev_rows,
            all_pool,
            pipeline.index_terms,
            0,
            options.seed + 3,
            options.query_turns,
            progress,
            context_negatives=9,
            sources=rows,
        ),
        "dev_randneg": make_groups(
            dev_rows,
            all_pool,
            pipeline.index_terms,
            9,
            options.seed + 2,
            options.query_turns,
            progress,
        ),
    }
    encode = lambda gs: encode_groups(gs, pipeline.tokenize, seq2seq.vocab, config)  # noqa: E731
    train_data = encode(groups)
    dev_sets = {name: encode(gs) for name, gs in dev_groups.items()}

    import keras

    keras.utils.set_random_seed(options.seed)
    net = build_network(config)
    init_from_seq2seq(net, seq2seq.model)
    out = Path(out_dir)
    meta = {
        "data": str(data),
        "seq2seq_model": str(model_dir),
        "split": {
            "excluded_heldout_lines": len(held),
            "training_dialogues": len(rows),
            "matcher_train_dialogues": len(train_rows),
            "dev_dialogues": len(dev_rows),
            "dev_lines": sorted(r.line for r in dev_rows),
            "by": "conversation (alime.seq2seq.data.split_dialogues)",
        },
        "train_groups": len(train_data),
        "options": asdict(options),
        "text": pipeline.config.as_metadata(),
    }

    def save(epoch: int, record: dict) -> None:
        save_matcher_dir(
            out,
            net,
            seq2seq.vocab,
            {**meta, "best_epoch": epoch, "dev": {n: record[n] for n in dev_sets}},
        )

    history, best_epoch, best_dev = fit(net, train_data, config, options, dev_sets, progress, save)
    import tensorflow as tf

    meta.update(
        {
            "best_epoch": best_epoch,
            "dev": best_dev,
            "history": history,
            "train_seconds": round(history[-1]["seconds"], 1) if history else 0.0,
            "wall_seconds": round(time.monotonic() - wall, 1),
            "tensorflow_version": tf.__version__,
        }
    )
    # the best epoch's weights are on disk; rewrite only the metadata
    (out / METADATA_FILE).write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return MatcherTrainResult(out, best_epoch, best_dev, history, meta["wall_seconds"])
