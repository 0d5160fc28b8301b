"""One facade per ``alime evaluate`` action: load data and model, run, write reports.

The CLI only parses flags and calls these. TensorFlow is imported only when a model is loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from alime.config import AppConfig
from alime.evaluation import generation, reports, scorers, selection, threshold
from alime.evaluation.corpus import Group, read_groups, read_true_rows
from alime.evaluation.heldout import heldout_lines, same_file, select_heldout
from alime.kb.formats import EcommerceRow
from alime.seq2seq.model_dir import (
    STACKING_FILE,
    ScorerKind,
    read_metadata,
    read_rerank_choice,
    write_thresholds,
)
from alime.text import TextPipeline
from alime.types import Scorer

log = logging.getLogger(__name__)


@dataclass
class ModelStages:
    """A loaded model's log-probability source and generator."""

    log_probs: scorers.LogProbSource
    generator: object


def load_model(
    model_dir: str | Path,
    pipeline: TextPipeline,
    beam_size: int = 5,
    config: AppConfig | None = None,
) -> ModelStages:
    """Load a seq2seq model directory (imports TensorFlow); the generator decodes with
    ``config.engine``'s settings (the defaults without a config)."""
    try:
        from alime.rerank.loading import make_generator
        from alime.rerank.scorers import MeanProbScorer
        from alime.seq2seq.model_dir import load_model_dir
    except ModuleNotFoundError as exc:
        raise ValueError(f"model scorers unavailable ({exc.name} missing)") from None
    model = load_model_dir(model_dir)
    return ModelStages(
        MeanProbScorer(model, pipeline),
        make_generator(model, config or AppConfig(), pipeline, beam_size),
    )


def _env(
    groups,
    pipeline: TextPipeline,
    stages: ModelStages | None,
    pmi_weight: float,
    query_turns: int,
    stacking_dir: Path | None = None,
) -> scorers.ScorerEnv:
    responses = [r for g in groups for r in g.responses]
    return scorers.ScorerEnv(
        responses,
        pipeline.index_terms,
        pipeline.tokenize,
        stages.log_probs if stages else None,
        pmi_weight,
        query_turns,
        stacking_dir,
    )


def stacking_dir_of(model_dir) -> Path | None:
    """``model_dir`` when it holds stacking weights (``stacking.json``), else None."""
    if model_dir is None or not (Path(model_dir) / STACKING_FILE).is_file():
        return None
    return Path(model_dir)


@dataclass(frozen=True)
class ExtraScorer:
    """A scorer outside the ``scorers.SCORERS`` table: how to build it from the evaluation's
    ``ScorerEnv``, whether it needs the model, and what it is (for reports)."""

    build: Callable[[scorers.ScorerEnv], Scorer]
    needs_model: bool
    description: str


@dataclass(frozen=True)
class SelectOptions:
    """Flags of ``evaluate select`` / ``evaluate threshold``."""

    scorers: str | None = None
    limit: int | None = None
    pmi_weight: float = 0.5
    query_turns: int = 3
    pmi_sweep: tuple[float, ...] = ()


def _score(
    data,
    model_dir,
    opts: SelectOptions,
    config: AppConfig,
    progress: bool,
    names: Sequence[scorers.ScorerName] | None = None,
    extra: Mapping[str, ExtraScorer] | None = None,
):
    groups = read_groups(data, limit=opts.limit)
    pipeline = TextPipeline(config.text)
    if names is None:
        # With extra scorers and no --scorers, only the extras run (the research probes).
        have_model = model_dir is not None
        empty = extra and not opts.scorers
        have_stacking = stacking_dir_of(model_dir) is not None
        names = [] if empty else scorers.parse_scorer_names(opts.scorers, have_model, have_stacking)
    need_model = any(scorers.SCORERS[n].needs_model for n in names) or any(
        e.needs_model for e in (extra or {}).values()
    )
    stages = load_model(model_dir, pipeline, config=config) if need_model else None
    env = _env(
        groups, pipeline, stages, opts.pmi_weight, opts.query_turns, stacking_dir_of(model_dir)
    )
    table = {n.value: env.get(n) for n in names}
    table.update({name: e.build(env) for name, e in (extra or {}).items()})
    return selection.score_groups(groups, table, progress), names, stages, groups


def run_select(
    data,
    model_dir,
    opts: SelectOptions,
    config: AppConfig | None = None,
    dump: str | Path | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    extra: Mapping[str, ExtraScorer] | None = None,
) -> dict:
    """Selection metrics per scorer (and optional score dump and report folder).

    Args:
        extra: more scorers by name, built from the same ``ScorerEnv`` (the research probes
            of ``python -m research.select``); with them, ``opts.scorers`` empty means none
            of the table's.
    """
    config = config or AppConfig()
    scored, names, _, _ = _score(data, model_dir, opts, config, progress, extra=extra)
    descriptions = {
        **scorers.describe(names),
        **{k: e.description for k, e in (extra or {}).items()},
    }
    report = selection.selection_report(scored, list(descriptions))
    if model_dir is not None:
        report["engine_default"] = engine_scorer(model_dir)[0].value
    if opts.pmi_sweep:
        needed = {scorers.ScorerName.MEAN_LOGPROB, scorers.ScorerName.PRIOR}
        if not needed <= set(names):
            raise ValueError("--pmi-sweep needs the mean_logprob and prior scorers")
        report["pmi_sweep"] = selection.weight_sweep(
            scored, "mean_logprob", "prior", opts.pmi_sweep
        )
    if dump:
        with open(dump, "w", encoding="utf-8") as fh:
            selection.dump_scores(scored, fh)
    if out_dir:
        full = {
            **report,
            "data": str(data),
            "model": str(model_dir) if model_dir else None,
            "pmi_weight": opts.pmi_weight,
            "scorer_descriptions": descriptions,
        }
        reports.write_report(out_dir, full, reports.selection_markdown(full, descriptions))
    return report


@dataclass(frozen=True)
class ThresholdOptions:
    """Flags of ``evaluate threshold``."""

    scorer: str | None = None  # None: the engine's rerank score (the model's rerank.json)
    rule: threshold.ThresholdRule = threshold.ThresholdRule.PRECISION
    target: float = threshold.DEFAULT_PRECISION_TARGET
    generation_quantile: float = threshold.DEFAULT_GENERATION_QUANTILE
    generation_limit: int | None = 200
    min_answered: int = threshold.DEFAULT_MIN_ANSWERED


def run_threshold(
    data,
    model_dir,
    out_dir,
    opts: ThresholdOptions,
    select: SelectOptions,
    config: AppConfig | None = None,
    write_model: bool = False,
    progress: bool = True,
) -> dict:
    """Sweep T on ``data``, choose T (and G when a generator exists), write the report folder."""
    config = config or AppConfig()
    engine_name, engine_weight = engine_scorer(model_dir)
    names = scorers.parse_scorer_names(opts.scorer or engine_name.value, model_dir is not None)
    if len(names) != 1:
        raise ValueError("threshold sweeps one scorer")
    if write_model and (
        names[0] is not engine_name
        or (
            engine_weight is not None
            and names[0] is scorers.ScorerName.PMI
            and abs(select.pmi_weight - engine_weight) > 1e-12
        )
    ):
        # T is compared with the engine's own rerank score: a T swept on another scale is wrong.
        raise ValueError(
            f"--write-model: the engine reranks with {engine_name.value}"
            + (f" (pmi weight {engine_weight})" if engine_weight is not None else "")
            + f"; sweep that scorer, not {names[0].value}"
        )
    scored, _, stages, groups = _score(data, model_dir, select, config, progress, names)
    name = names[0].value
    best, correct = threshold.top_outcomes(
        [g.scores[name] for g in scored], [g.group.true_index for g in scored]
    )
    points = threshold.sweep(best, correct, threshold.threshold_grid(best))
    choice = threshold.choose_threshold(points, opts.rule, opts.target, opts.min_answered)
    gen = _generation_threshold(groups, stages, best, choice.threshold, opts, progress)
    report = {
        "data": str(data),
        "model": str(model_dir) if model_dir else None,
        "scorer": name,
        "groups": len(scored),
        "top1_accuracy": float(correct.mean()) if len(correct) else 0.0,
        "threshold": choice.threshold,
        "rule": choice.rule,
        "chosen": asdict(choice.point) if choice.point else None,
        "generation_threshold": gen["threshold"],
        "generation_rule": gen["rule"],
        "generation_scores": gen.get("scores"),
        "sweep": threshold.points_json(points),
    }
    out = reports.write_report(out_dir, report, _threshold_markdown(report))
    threshold.plot_sweep(points, choice, out / "threshold.png", f"{name} on {Path(data).name}")
    if write_model:
        if model_dir is None:
            raise ValueError("--write-model needs --model DIR")
        provenance = {
            "scorer": name,
            "rule": choice.rule,
            "chosen": report["chosen"],
            "generation_rule": gen["rule"],
            "data": str(data),
            "groups": len(scored),
        }
        write_thresholds(model_dir, choice.threshold, gen["threshold"], provenance)
    return report


def engine_scorer(model_dir: str | Path | None) -> tuple[scorers.ScorerName, float | None]:
    """The evaluation scorer that computes the engine's rerank score for ``model_dir`` (its
    ``rerank.json``; AliMe's mean probability, ``seq2seq``, without one) and its PMI weight."""
    if model_dir is None:
        return scorers.ScorerName.SEQ2SEQ, None
    kind, options = read_rerank_choice(model_dir)
    weight = options.get("weight", 0.5) if kind is ScorerKind.PMI else None  # PMIScorer's default
    return scorers.for_engine_score(kind), weight


def _generation_threshold(
    groups, stages: ModelStages | None, best, t: float, opts: ThresholdOptions, progress: bool
) -> dict:
    """G from the generator's scores on the contexts the KB would not answer at T."""
    if stages is None or stages.generator is None:
        return {
            "threshold": threshold.DEFAULT_GENERATION_THRESHOLD,
            "rule": "no generator: default 0.0 (every generated reply is used)",
        }
    below = [g for g, b in zip(groups, best, strict=True) if b < t] or list(groups)
    below = below[: opts.generation_limit] if opts.generation_limit else below
    samples = generation.generate_replies(_as_rows(below), stages.generator, progress)
    values = [s.score for s in samples if s.score is not None]
    g = threshold.generation_threshold(values, opts.generation_quantile)
    return {
        "threshold": g,
        "rule": (
            f"{opts.generation_quantile:.0%} quantile of generated-reply scores (mean "
            f"per-token probability, the generator's scale) on "
            f"{len(values)} validation contexts the KB does not answer at T "
            "(the least confident share goes to the fallback)"
        ),
        "scores": {
            "n": len(values),
            "min": min(values),
            "max": max(values),
            "mean": sum(values) / len(values),
        },
    }


def _as_rows(groups: Sequence[Group]) -> list[EcommerceRow]:
    """Each group's context and real response as a dialogue row."""
    return [EcommerceRow(1, g.turns, g.true_response, g.line) for g in groups]


def _threshold_markdown(report: dict) -> str:
    chosen = report["chosen"] or {}
    lines = [
        "# Threshold sweep\n",
        f"Data: `{report['data']}`, {report['groups']} groups, scorer `{report['scorer']}`; "
        f"top-1 accuracy {report['top1_accuracy']:.4f}.\n",
        f"**T = {report['threshold']:.6g}** ({report['rule']}): answered "
        f"{chosen.get('answered', 0):.4f}, precision {chosen.get('precision') or 0:.4f}.\n",
        f"**G = {report['generation_threshold']:.6g}** ({report['generation_rule']}).\n",
        "![sweep](threshold.png)\n",
    ]
    step = max(1, len(report["sweep"]) // 20)
    rows = [
        [
            p["threshold"],
            p["answered"],
            p["precision"] if p["precision"] is not None else "-",
            p["f1"],
        ]
        for p in report["sweep"][::step]
    ]
    lines.append(reports.markdown_table(["T", "answered", "precision", "F1"], rows))
    return "\n".join(lines)


def run_generate(
    data,
    model_dir,
    limit: int | None,
    config: AppConfig | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    beam_size: int = 5,
    skip: int = 0,
) -> dict:
    """Generation metrics on the held-out dialogues (label-1 lines) of ``data`` (after the first
    ``skip``, at most ``limit``)."""
    config = config or AppConfig()
    dialogues = read_true_rows(data)
    if model_dir is None:
        raise ValueError("generation needs a model: give --model DIR")
    lines = _heldout_or_all(read_metadata(model_dir), data)
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    dialogues = select_heldout(dialogues, lines)[skip:][:limit]
    pipeline = TextPipeline(config.text)
    stages = load_model(model_dir, pipeline, beam_size, config)
    samples = generation.generate_replies(dialogues, stages.generator, progress)
    e = config.engine
    report = {
        "data": str(data),
        "model": str(model_dir),
        "skip": skip,
        "decoding": {
            "beam_size": beam_size,
            "min_answer_tokens": e.min_answer_tokens,
            "anti_lm_weight": e.anti_lm_weight,
            "anti_lm_steps": e.anti_lm_steps,
        },
        **generation.generation_report(samples, pipeline.tokenize),
    }
    if out_dir:
        out = reports.write_report(out_dir, report, _generation_markdown(report))
        with (out / "samples.jsonl").open("w", encoding="utf-8") as fh:
            for s in samples[:200]:
                fh.write(json.dumps(asdict(s), ensure_ascii=False) + "\n")
    return report


def _heldout_or_all(metadata: dict, data) -> set[int] | None:
    """Held-out lines when ``data`` is a training file of the model, else every line."""
    try:
        return heldout_lines(metadata, data)
    except ValueError:
        trained = [f for f in metadata.get("data_files") or () if same_file(f, Path(data))]
        if trained:
            raise
        return None


def _generation_markdown(report: dict) -> str:
    rows = [
        [k, report["generated"][k], report["reference"][k]]
        for k in ("distinct_1", "distinct_2", "mean_length", "most_common_share")
    ]
    return (
        f"# Generation\n\nData: `{report['data']}`, {report['dialogues']} held-out dialogues; "
        f"corpus BLEU-4 (add-one smoothed for n >= 2): **{report['bleu4']:.4f}**.\n\n"
        + reports.markdown_table(["metric", "generated", "real replies"], rows)
        + f"\nMost common generated reply: `{report['generated']['most_common']}`\n"
    )
