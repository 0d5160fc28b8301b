"""Build the engine's rerank and generation stages from a model directory.

``alime.bot`` calls ``load_stages`` once at start-up. An int8 model directory is served without
TensorFlow (``load_serving_model``: numpy and the int8 kernel); an fp32 one imports TensorFlow
here, never at ``import alime``.
"""

from __future__ import annotations

from pathlib import Path

from alime.config import AppConfig
from alime.rerank.scorers import make_scorer
from alime.seq2seq.generator import BeamGenerator
from alime.seq2seq.model_dir import (
    LoadedModel,
    is_quantized_dir,
    load_model_dir,
    read_rerank_choice,
    read_thresholds,
)
from alime.seq2seq.quantized import load_int8_model_dir
from alime.text import TextPipeline
from alime.types import Scorer


def make_generator(
    model, config: AppConfig, pipeline: TextPipeline, beam_size: int | None = None
) -> BeamGenerator:
    """The beam-search generator with the decoding settings of ``config.engine``."""
    e = config.engine
    return BeamGenerator(
        model,
        pipeline,
        beam_size=beam_size or e.beam_size,
        max_len=e.max_answer_tokens,
        min_len=e.min_answer_tokens,
        anti_lm_weight=e.anti_lm_weight,
        anti_lm_steps=e.anti_lm_steps,
    )


def load_serving_model(model_dir: str | Path) -> LoadedModel:
    """The model directory as the engine's stages use it: an int8 directory through numpy and
    the int8 kernel, loaded once per process and shared (no Keras model, no TensorFlow); an fp32
    one as ``load_model_dir`` builds it (TensorFlow)."""
    if is_quantized_dir(model_dir):
        return load_int8_model_dir(model_dir)
    return load_model_dir(model_dir)


def load_stages(
    model_dir: str | Path, config: AppConfig, pipeline: TextPipeline, warm_up: bool = True
) -> tuple[Scorer, BeamGenerator, dict[str, float]]:
    """The model directory's rerank scorer (``rerank.json``; default AliMe's mean per-token
    probability), the beam-search generator (mean per-token probability) and the tuned
    thresholds (T on the rerank score's scale, G on the generator's).

    Args:
        model_dir: a directory written by ``alime train``.
        config: the app configuration (beam size and answer length come from ``config.engine``).
        pipeline: the shared text pipeline (the same tokens as retrieval).
        warm_up: run scoring and decoding once now (fp32: traces the graphs, a few seconds)
            rather than on the first request.
    """
    model = load_serving_model(model_dir)
    kind, options = read_rerank_choice(model_dir)
    scorer = make_scorer(kind, model, pipeline, **options)
    generator = make_generator(model, config, pipeline)
    if warm_up:
        scorer.score("", [], ["", "a"])
        generator.generate("", [])
    return scorer, generator, read_thresholds(model_dir)
