"""The bundled default: the int8 model the server uses must rerank on the same score, with the
same thresholds, as the fp32 model they were tuned on."""

import json

from alime.config import BUNDLED_DATA, AppConfig
from alime.rerank.loading import read_rerank_choice


def test_int8_default_matches_the_tuned_fp32_model():
    fp32, int8 = BUNDLED_DATA / "model", BUNDLED_DATA / "model-int8"
    assert AppConfig().resolved_paths()[2] == int8
    assert read_rerank_choice(int8) == read_rerank_choice(fp32)
    for name in ("thresholds.json", "config.json", "vocab.json"):
        assert json.loads((int8 / name).read_text()) == json.loads((fp32 / name).read_text()), name


def test_bundled_matcher_never_saw_the_held_out_dialogues():
    model, matcher = BUNDLED_DATA / "model", BUNDLED_DATA / "model" / "matcher"
    held = {line for lines in json.loads((model / "training.json").read_text())["split"][
        "valid_dialogue_lines"].values() for line in lines}
    meta = json.loads((matcher / "training.json").read_text(encoding="utf-8"))
    assert len(held) == 500 and meta["split"]["excluded_heldout_lines"] == 500
    assert meta["split"]["training_dialogues"] == 4500
    assert not set(meta["split"]["dev_lines"]) & held
    assert json.loads((matcher / "vocab.json").read_text()) == json.loads((model / "vocab.json").read_text())
    assert read_rerank_choice(model)[0].value == "pmi"  # the matcher is not the engine's default
