"""One module names, reads and writes every file of a model directory
(``alime.seq2seq.model_dir``): its tuned files round-trip, and no other module of the package
joins one of those names onto a path."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from alime.seq2seq import model_dir as md

PACKAGE = Path(__file__).resolve().parents[2] / "alime"
NAMES = {
    md.CONFIG_FILE,
    md.VOCAB_FILE,
    md.WEIGHTS_FILE,
    md.METADATA_FILE,
    md.QUANT_FILE,
    md.QUANT_DIR,
    md.THRESHOLDS_FILE,
    md.SWEEP_FILE,
    md.RERANK_FILE,
    md.ROUTING_FILE,
}
# The BM25 index directory has a vocab.json of its own (its terms), owned by bm25.py; config.py
# picks the bundled model folder that has a config.json without importing alime.seq2seq (the
# configuration sits below every package: importing it would make a cycle).
EXEMPT = {
    PACKAGE / "retrieval" / "bm25.py": {md.VOCAB_FILE},
    PACKAGE / "config.py": {md.CONFIG_FILE},
}


def _path_joins(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants joined onto a path: ``x / "name"`` and ``Path(..., "name")``."""
    found = []
    for node in ast.walk(tree):
        parts = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [node.right]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Path":
            parts = node.args[1:]
        for part in parts:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                found.append((node.lineno, part.value))
    return found


def test_no_other_module_names_a_model_directory_file():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(md.__file__).resolve():
            continue
        for line, name in _path_joins(ast.parse(path.read_text(encoding="utf-8"))):
            allowed = EXEMPT.get(path, set())
            if name in NAMES and name not in allowed:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name}")
    assert not offenders, offenders
    # The check sees a join when there is one (it can fail).
    assert _path_joins(ast.parse('p / "rerank.json"; Path(d, "vocab.json")')) == [
        (1, "rerank.json"),
        (1, "vocab.json"),
    ]


def test_rerank_choice_round_trips_and_rejects_a_weight_for_another_score(tmp_path):
    assert md.read_rerank_choice(tmp_path) == (md.ScorerKind.MEAN_PROB, {})
    md.write_rerank_choice(tmp_path, md.ScorerKind.PMI, 0.5)
    assert json.loads((tmp_path / md.RERANK_FILE).read_text()) == {
        "rerank_score": "pmi",
        "pmi_weight": 0.5,
    }
    assert md.read_rerank_choice(tmp_path) == (md.ScorerKind.PMI, {"weight": 0.5})
    md.write_rerank_choice(tmp_path, "prior")
    assert md.read_rerank_choice(tmp_path) == (md.ScorerKind.PRIOR, {})
    with pytest.raises(ValueError, match="pmi_weight applies to rerank_score 'pmi' only"):
        md.write_rerank_choice(tmp_path, md.ScorerKind.PRIOR, 0.5)


def test_bundled_rerank_files_are_what_the_writer_writes(tmp_path):
    """The bundled rerank.json is a file the package can write (it used to be hand-made)."""
    from alime.config import BUNDLED_DATA

    for name in ("model", "model-int8"):
        kind, options = md.read_rerank_choice(BUNDLED_DATA / name)
        md.write_rerank_choice(tmp_path, kind, options.get("weight"))
        assert json.loads((tmp_path / md.RERANK_FILE).read_text()) == json.loads(
            (BUNDLED_DATA / name / md.RERANK_FILE).read_text()
        )


def test_thresholds_routing_and_tensors_round_trip(tmp_path):
    path = md.write_thresholds(tmp_path, 0.5, 0.25, {"rule": "r"}, chitchat=0.75)
    assert path == tmp_path / md.THRESHOLDS_FILE
    assert md.read_thresholds(tmp_path) == {
        "threshold": 0.5,
        "generation_threshold": 0.25,
        "chitchat_threshold": 0.75,
    }
    assert json.loads((tmp_path / md.SWEEP_FILE).read_text())["rule"] == "r"
    assert md.read_routing_file(tmp_path) == (tmp_path / md.ROUTING_FILE, None)
    md.write_routing_file(tmp_path, {"score": "logistic", "note": "数据"})
    assert md.read_routing_file(tmp_path)[1] == {"score": "logistic", "note": "数据"}
    (tmp_path / md.ROUTING_FILE).write_text("{")
    with pytest.raises(ValueError, match="invalid routing file"):
        md.read_routing_file(tmp_path)
    assert not md.is_quantized_dir(tmp_path)
    relative = md.save_tensor(tmp_path, "enc__kernel", "int8", np.arange(6, dtype=np.int8))
    md.write_quant_marker(tmp_path, {"tensors": [relative]})
    assert md.is_quantized_dir(tmp_path) and md.read_quant_marker(tmp_path) == {
        "tensors": ["int8/enc__kernel.int8.npy"]
    }
    np.testing.assert_array_equal(md.load_tensor(tmp_path, relative), np.arange(6))
    assert md.weight_files(tmp_path) == [tmp_path / md.QUANT_FILE, tmp_path / relative]
