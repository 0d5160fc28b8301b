"""The bundled default: the int8 model the server uses must rerank on the same score, with the
same thresholds, as the fp32 model they were tuned on."""

import json

from alime.config import BUNDLED_DATA, AppConfig
from alime.rerank.loading import read_rerank_choice


def test_int8_default_matches_the_tuned_fp32_model():
    fp32, int8 = BUNDLED_DATA / "model", BUNDLED_DATA / "model-int8"
    assert AppConfig().resolved_paths()[2] == int8
    assert read_rerank_choice(int8) == read_rerank_choice(fp32)
    for name in ("thresholds.json", "config.json", "vocab.json", "routing.json"):
        assert json.loads((int8 / name).read_text()) == json.loads((fp32 / name).read_text()), name
