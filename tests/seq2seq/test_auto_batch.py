"""`--batch-size auto`: Pluto's pre-run picks the per-replica batch from measured throughput, and
training.json records what was measured and chosen."""

import json

import pytest

from alime.seq2seq.config import Seq2SeqConfig
from alime.seq2seq.training import TrainOptions, train
from alime.text import TextConfig
from pluto.heuristics import select_batch_size
from tests.seq2seq.test_training import DIALOGUES


@pytest.mark.slow
def test_auto_batch_size_is_measured_chosen_and_recorded(tmp_path):
    data = tmp_path / "train.txt"
    data.write_text("\n".join(DIALOGUES * 3) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    shape = Seq2SeqConfig(vocab_size=100, embed_dim=4, hidden_dim=4, attention_dim=4)
    options = TrainOptions(epochs=1, valid_fraction=0.2, auto_batch_sizes=(2, 16), seed=2)
    train(
        [data], out, model_config=shape, options=options, text_config=TextConfig(), progress=False
    )
    meta = json.loads((out / "training.json").read_text(encoding="utf-8"))
    auto = meta["batch"]["auto"]
    assert auto["candidates"] == [2, 16]
    measured = {int(k): v for k, v in auto["examples_per_s"].items()}
    assert set(measured) == {2, 16} and all(v > 0 for v in measured.values())
    # The choice is Pluto's rule applied to those measurements, and training used it.
    chosen = select_batch_size(measured.get, [2, 16])
    assert meta["batch"]["per_replica"] == chosen == meta["options"]["batch_size"]
    assert meta["batch"]["global"] == chosen  # one replica
