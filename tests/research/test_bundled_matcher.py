"""The bundled research matcher (research/data/matcher) and the bundled model it was trained
beside."""

import json

from alime.config import BUNDLED_DATA
from alime.seq2seq.model_dir import read_rerank_choice
from research.scorers import BUNDLED_MATCHER


def test_bundled_matcher_never_saw_the_held_out_dialogues():
    model, matcher = BUNDLED_DATA / "model", BUNDLED_MATCHER
    held = {
        line
        for lines in json.loads((model / "training.json").read_text())["split"][
            "valid_dialogue_lines"
        ].values()
        for line in lines
    }
    meta = json.loads((matcher / "training.json").read_text(encoding="utf-8"))
    assert len(held) == 500 and meta["split"]["excluded_heldout_lines"] == 500
    assert meta["split"]["training_dialogues"] == 4500
    assert not set(meta["split"]["dev_lines"]) & held
    assert json.loads((matcher / "vocab.json").read_text()) == json.loads(
        (model / "vocab.json").read_text()
    )
    assert read_rerank_choice(model)[0].value == "stacked"  # the matcher is not the default
