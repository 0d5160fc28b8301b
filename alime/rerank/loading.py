"""Build the engine's rerank and generation stages from a model directory.

``alime.bot`` calls ``load_stages`` once at start-up; TensorFlow is imported here, never by
``import alime``.
"""

from __future__ import annotations

import json
from pathlib import Path

from alime.config import AppConfig
from alime.rerank.scorers import MeanProbScorer
from alime.seq2seq.generator import BeamGenerator
from alime.seq2seq.model_dir import load_model_dir
from alime.text import TextPipeline

# Written by the threshold sweep (evaluation) next to the weights: {"threshold": T,
# "generation_threshold": G}, both on the mean per-token probability scale.
THRESHOLDS_FILE = "thresholds.json"
_THRESHOLD_KEYS = ("threshold", "generation_threshold")


def read_thresholds(model_dir: str | Path) -> dict[str, float]:
    """The tuned thresholds saved with the model ({} when none were tuned).

    Raises:
        ValueError: when the file has unknown keys or non-numeric values.
    """
    path = Path(model_dir) / THRESHOLDS_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(data) - set(_THRESHOLD_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; valid: {list(_THRESHOLD_KEYS)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()):
        raise ValueError(f"{path}: thresholds must be numbers")
    return {k: float(v) for k, v in data.items()}


def load_stages(
    model_dir: str | Path, config: AppConfig, pipeline: TextPipeline, warm_up: bool = True
) -> tuple[MeanProbScorer, BeamGenerator, dict[str, float]]:
    """AliMe's scorer (mean per-token probability), the beam-search generator on the same scale,
    and the model directory's tuned thresholds.

    Args:
        model_dir: a directory written by ``alime train``.
        config: the app configuration (beam size and answer length come from ``config.engine``).
        pipeline: the shared text pipeline (the same tokens as retrieval).
        warm_up: trace the scoring and decoding graphs now (a few seconds) rather than on the
            first request.
    """
    model = load_model_dir(model_dir)
    scorer = MeanProbScorer(model, pipeline)
    generator = BeamGenerator(model, pipeline, beam_size=config.engine.beam_size,
                              max_len=config.engine.max_answer_tokens)
    if warm_up:
        scorer.score("", [], ["", "a"])
        generator.generate("", [])
    return scorer, generator, read_thresholds(model_dir)
