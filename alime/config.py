"""Typed, frozen configuration, composed into one tree and loaded from TOML.

Unknown keys are rejected (a typo must not silently fall back to a default). Relative paths in a
TOML file are resolved against the file's folder.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alime.text import TextConfig

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_DATA = PACKAGE_ROOT / "data"


def alime_home(state: str = "") -> Path:
    """The state directory: working copies of the KB and index, sessions, server run files.

    Per project, so two clones (or two projects) on one machine never share a KB, an index or a
    session database: ``$ALIME_HOME`` when set (it overrides everything); else ``state`` (the
    config's ``[paths] state``, which a config file defaults to ``var/`` beside itself); else
    ``var/`` in the source checkout alime runs from; else ``var/`` in the current directory.
    """
    env = os.environ.get("ALIME_HOME")
    if env:
        return Path(env)
    if state:
        return Path(state)
    if (PACKAGE_ROOT / "pyproject.toml").is_file():  # running from a checkout (editable install)
        return PACKAGE_ROOT / "var"
    return Path.cwd() / "var"


@dataclass(frozen=True)
class BM25Config:
    k1: float = 1.5
    b: float = 0.75
    epsilon: float = 0.25  # rank-bm25's floor for negative idf, as a share of the mean idf


@dataclass(frozen=True)
class DenseConfig:
    kind: str = "auto"  # auto | flat | hnsw | ivf (auto: flat below approx_threshold, else ivf)
    approx_threshold: int = 50_000  # vectors from which "auto" leaves exact search
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 64
    ivf_nlist: int = 0  # 0: about 4 * sqrt(n) lists
    ivf_nprobe: int = 128  # lists searched per query (recall@10 vs exact >= 0.95 at 100k and 1M)
    pooling: str = "words"  # states | words | concat (see alime.retrieval.embeddings)
    sif_a: float = 0.01  # smooth-inverse-frequency word weighting; 0 = plain mean
    center: bool = True  # subtract the KB's mean vector before indexing (see alime.retrieval.dense)
    search_threads: int = 1  # faiss OpenMP threads per query (more is slower on a busy machine)


@dataclass(frozen=True)
class FusionConfig:
    mode: str = "weighted"  # rrf | weighted; measured best on the noisy-query dev split
    dense_weight: float = 0.4  # BM25 gets 1 - dense_weight
    depth: int = 50  # candidates taken from each retriever before fusing
    rrf_c: float = 60.0


@dataclass(frozen=True)
class RetrievalConfig:
    k: int = 10  # candidates handed to the reranker (AliMe used 10)
    bm25: BM25Config = field(default_factory=BM25Config)
    merge_every: int = 256  # live edits kept in the delta before it is merged into the main index
    # A sync that finds more KB changes than this (a bulk import) leaves them to one background
    # thread instead of the request thread; 0: always apply in the request thread.
    background_sync_above: int = 2000
    mode: str = "hybrid"  # bm25 | dense | hybrid (dense and hybrid need a model; else bm25)
    dense: DenseConfig = field(default_factory=DenseConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    # The KB's entry classifier (alime.retrieval.entry_classifier): its most probable entries
    # missing from the retrieved ones are added as candidates (this many), and it feeds the
    # routing score's ``intent`` feature; 0: no classifier.
    classifier_extra: int = 3

    def __post_init__(self) -> None:
        if self.classifier_extra < 0:
            raise ValueError("retrieval.classifier_extra must be >= 0 (0: no classifier)")


@dataclass(frozen=True)
class EngineConfig:
    # routing: T on the model's routing score (routing.json) when it has one; rerank: AliMe's
    # rule, T on the best rerank score (thresholds.json). See docs/evaluation.md, "Routing".
    decision: str = "routing"
    threshold: float | None = None  # None: the model directory's tuned threshold
    generation_threshold: float | None = None  # None: the model directory's value
    context_turns: int = 3
    fallback_reply: str = "抱歉，这个问题我暂时无法回答，已为您转接人工客服。"
    beam_size: int = 5
    max_answer_tokens: int = 30
    # Decoding, chosen by BLEU-4 on the first 250 held-out dialogues (docs/model.md): at least
    # 3 tokens, and MMI-antiLM: lambda * log p(token | prefix) of the response prior is
    # subtracted for the first anti_lm_steps tokens (weight 0 or steps 0 disables it).
    min_answer_tokens: int = 3
    anti_lm_weight: float = 0.5
    anti_lm_steps: int = 30


@dataclass(frozen=True)
class GuardsConfig:
    """The rules applied before retrieval (``alime.guards``) and what each answers."""

    enabled: bool = True
    lexicon: str = str(BUNDLED_DATA / "text" / "guards.toml")
    complaint_reply: str = "非常抱歉给您带来不好的体验，已为您转接人工客服，请稍候。"
    person_reply: str = "好的，正在为您转接人工客服，请稍候。"
    order_status_reply: str = "具体订单的情况需要人工客服为您查询，已为您转接，请稍候。"
    rephrase_reply: str = "抱歉，没有看懂您的意思，能换个说法描述一下您的问题吗？"


@dataclass(frozen=True)
class ChitChatConfig:
    """The chit-chat KB (``alime.chitchat``), asked when the FAQ does not answer."""

    enabled: bool = True
    # Read in order; on equal scores the earlier file wins. A folder: its *.yml files.
    # The bundled ones: the shop's own small talk, the greetings and thanks that `alime kb curate`
    # moved out of the FAQ (data/kb/chitchat.jsonl), then the ChatterBot corpus.
    files: tuple[str, ...] = (
        str(BUNDLED_DATA / "chitchat" / "shop_zh.jsonl"),
        str(BUNDLED_DATA / "kb" / "chitchat.jsonl"),
        str(BUNDLED_DATA / "chatterbot_zh"),
    )
    # The bar on the character F1 of the query and the chit-chat question (compact text); None:
    # the model directory's tuned value (thresholds.json "chitchat_threshold"), else 0.8.
    threshold: float | None = None


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    # Two processes for the two cores: the int8 model's forward pass, jieba and Flask hold the
    # GIL, so one process cannot use both cores; 4 threads each keep 8 requests in flight.
    workers: int = 2
    threads: int = 4
    # A listening socket per worker (SO_REUSEPORT), so the kernel spreads new connections over
    # the workers; false: one socket shared by the workers (see docs/serving.md, "Workers").
    reuse_port: bool = True
    max_body_bytes: int = 16 * 1024
    max_import_bytes: int = 32 * 1024 * 1024  # admin bulk import bodies
    max_query_chars: int = 500
    max_context_turns: int = 10
    session_capacity: int = 10_000
    session_ttl_s: float = 1800.0
    request_timeout_s: float = (
        10.0  # per-request budget: generation is skipped when it would overrun
    )
    # Where session turns live, shared by every worker: "sqlite" (one file in the state directory,
    # for one machine) or "redis" (redis_url, for several machines behind a load balancer).
    sessions: str = "sqlite"
    sessions_path: str = ""  # SQLite file; "" = <state dir>/sessions.sqlite
    redis_url: str = "redis://127.0.0.1:6379/0"  # also read from $ALIME_REDIS_URL (which wins)
    redis_prefix: str = "alime:session:"  # key prefix, so several bots can share one Redis
    admin_token: str | None = None  # also read from $ALIME_ADMIN_TOKEN; admin API off when unset
    # Containers (objects and lists) nested in a request body; /api/chat needs 2, /api/kb/import 4.
    # Without a bound, 1,000-deep nesting overflowed the JSON parser's recursion (issue 12).
    max_json_depth: int = 20

    def __post_init__(self) -> None:
        _check_positive(self, "serve", ("max_json_depth",))


@dataclass(frozen=True)
class KBConfig:
    """Limits on KB import files (`alime kb import`) and contents (`POST /api/kb/import`).

    They bound the memory and time one bad or hostile file can take: a line is refused before it
    is read whole, a field before it is stored, a nested document before it is built.
    """

    max_line_bytes: int = 256 * 1024  # one line of a tsv / jsonl / ecommerce / chatterbot file
    max_field_chars: int = 10_000  # a question or answer (also the admin API's limit)
    max_depth: int = 20  # containers nested in one JSONL line or in a ChatterBot YAML document

    def __post_init__(self) -> None:
        _check_positive(self, "kb", ("max_line_bytes", "max_field_chars", "max_depth"))


def _check_positive(section: object, name: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = getattr(section, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config key '{name}.{key}' must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class TrainingConfig:
    """``[train]``: hyper-parameters ``alime train`` takes from ``--config`` (a flag given on the
    command line wins); ``alime tune`` writes its best trial as this section. The defaults are
    those of ``TrainOptions``, ``Seq2SeqConfig`` and ``ParallelOptions`` (a test keeps them
    equal)."""

    learning_rate: float = 1e-3
    batch_size: int = 64
    epochs: int = 10
    embed_dim: int = 128
    hidden_dim: int = 256
    attention_dim: int = 128
    dropout: float = 0.1
    avg_period: int = 8

    def __post_init__(self) -> None:
        _check_positive(
            self,
            "train",
            ("batch_size", "epochs", "embed_dim", "hidden_dim", "attention_dim", "avg_period"),
        )
        if self.learning_rate <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("config keys 'train.learning_rate' > 0 and 'train.dropout' in [0, 1)")


@dataclass(frozen=True)
class PathsConfig:
    kb: str = ""  # SQLite file; "" = <state dir>/kb.sqlite (seeded from the bundled default)
    index: str = ""  # index folder; "" = next to the KB
    model: str = (
        ""  # model folder; "" = the bundled int8 model (else fp32); "none" = retrieval only
    )
    state: str = ""  # state directory; "" = var/ beside the config file (see alime_home)


@dataclass(frozen=True)
class AppConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    text: TextConfig = field(
        default_factory=lambda: TextConfig(
            user_dict=str(BUNDLED_DATA / "text" / "userdict.txt"),
            stopwords=str(BUNDLED_DATA / "text" / "stopwords.txt"),
            synonyms=str(BUNDLED_DATA / "text" / "synonyms.txt"),
            spellings=str(BUNDLED_DATA / "text" / "spellings.txt"),
        )
    )
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    guards: GuardsConfig = field(default_factory=GuardsConfig)
    chitchat: ChitChatConfig = field(default_factory=ChitChatConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    kb: KBConfig = field(default_factory=KBConfig)
    train: TrainingConfig = field(default_factory=TrainingConfig)

    def state_dir(self) -> Path:
        """The state directory (``$ALIME_HOME`` wins over ``[paths] state``; see alime_home)."""
        return alime_home(self.paths.state)

    def resolved_paths(self) -> tuple[Path, Path, Path | None]:
        """(kb file, index folder, model folder or None)."""
        kb = Path(self.paths.kb) if self.paths.kb else self.state_dir() / "kb.sqlite"
        index = Path(self.paths.index) if self.paths.index else kb.with_suffix(".index")
        if self.paths.model == "none":
            model: Path | None = None
        elif self.paths.model:
            model = Path(self.paths.model)
        else:
            # The int8 model serves by default (4x smaller, faster); the fp32 one stays
            # selectable with [paths] model = ".../data/model".
            # "config.json" is alime.seq2seq.model_dir.CONFIG_FILE, spelled out: config sits
            # below every package and must not import alime.seq2seq (which imports config).
            candidates = (BUNDLED_DATA / "model-int8", BUNDLED_DATA / "model")
            model = next((c for c in candidates if (c / "config.json").exists()), None)
        return kb, index, model


_PATH_FIELDS = {
    ("paths", "kb"),
    ("paths", "index"),
    ("paths", "model"),
    ("paths", "state"),
    ("text", "user_dict"),
    ("text", "stopwords"),
    ("text", "synonyms"),
    ("text", "spellings"),
    ("guards", "lexicon"),
    ("chitchat", "files"),
    ("serve", "sessions_path"),
}


def from_dict(cls: type, data: dict[str, Any], where: str = "", base: Path | None = None):
    """Build dataclass ``cls`` from nested dicts, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ValueError(f"config section '{where or 'root'}' must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {unknown} in '{where or 'root'}'; valid: {sorted(fields)}"
        )
    kwargs = {}
    defaults = cls()
    for name, value in data.items():
        current = getattr(defaults, name)
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(current):
            kwargs[name] = from_dict(type(current), value, key, base)
            continue
        if isinstance(current, tuple):  # a list of strings in TOML
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"config key '{key}' must be a list of strings, got {value!r}")
            value = tuple(value)
        elif current is not None and not _type_ok(current, value):
            raise ValueError(f"config key '{key}' must be {type(current).__name__}, got {value!r}")
        if base is not None and tuple(key.split(".")) in _PATH_FIELDS:
            value = (
                tuple(_resolve(base, v) for v in value)
                if isinstance(value, tuple)
                else _resolve(base, value)
            )
        kwargs[name] = value
    return cls(**kwargs)


def _resolve(base: Path, value):
    if isinstance(value, str) and value not in ("", "none"):
        return str((base / value).resolve())
    return value


def _type_ok(default: Any, value: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, type(default))


def load_config(path: str | Path | None = None) -> AppConfig:
    """The defaults, overridden by a TOML file when given."""
    if path is None:
        return AppConfig()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    config = from_dict(AppConfig, data, base=path.resolve().parent)
    if not config.paths.state:
        # A config file marks a project: its state lives beside it, not in a machine-wide folder.
        paths = dataclasses.replace(config.paths, state=str(path.resolve().parent / "var"))
        config = dataclasses.replace(config, paths=paths)
    return config
