"""``alime evaluate`` end to end on tiny files, with the model-free scorers (no TensorFlow)."""

import json

import pytest

from alime.cli import main


def test_select_json_dump_and_report(groups_file, tmp_path, capsys):
    dump = tmp_path / "scores.jsonl"
    rc = main(
        [
            "evaluate",
            "select",
            "--data",
            str(groups_file),
            "--model",
            "none",
            "--scorers",
            "bm25,shorter",
            "--json",
            "--dump-scores",
            str(dump),
            "--out",
            str(tmp_path / "r"),
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"] == 2 and set(report["scorers"]) == {"bm25", "shorter"}
    assert set(report["scorers"]["bm25"]) == {"r10@1", "r10@2", "r10@5", "mrr"}
    assert len(dump.read_text().splitlines()) == 20
    assert "| shorter |" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")


def test_threshold_without_model(groups_file, tmp_path, capsys):
    out = tmp_path / "t"
    assert (
        main(
            [
                "evaluate",
                "threshold",
                "--data",
                str(groups_file),
                "--model",
                "none",
                "--scorer",
                "bm25",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["generation_threshold"] == 0.0
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "threshold.png"}


def test_bad_file_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\tq\ta\n0\tq\n", encoding="utf-8")
    assert (
        main(["evaluate", "select", "--data", str(bad), "--model", "none", "--scorers", "shorter"])
        == 2
    )
    assert f"{bad}:2:" in capsys.readouterr().err


@pytest.mark.parametrize("scorers", ["nope", "seq2seq"])
def test_bad_scorer_names(groups_file, scorers, capsys):
    assert (
        main(
            [
                "evaluate",
                "select",
                "--data",
                str(groups_file),
                "--model",
                "none",
                "--scorers",
                scorers,
            ]
        )
        == 2
    )
    assert "alime: error:" in capsys.readouterr().err


def test_written_thresholds_load_in_the_engine(tmp_path):
    from alime.seq2seq.model_dir import read_thresholds, write_thresholds

    write_thresholds(tmp_path, 0.25, 0.125, {"rule": "r", "data": "d"})
    assert read_thresholds(tmp_path) == {"threshold": 0.25, "generation_threshold": 0.125}
    sweep = json.loads((tmp_path / "thresholds_sweep.json").read_text())
    assert sweep == {"threshold": 0.25, "generation_threshold": 0.125, "rule": "r", "data": "d"}


def test_threshold_follows_the_engines_rerank_score(tmp_path):
    import json as _json

    import pytest as _pytest

    from alime.evaluation import runner
    from alime.evaluation.scorers import ScorerName

    model = tmp_path / "model"
    model.mkdir()
    assert runner.engine_scorer(model) == (ScorerName.SEQ2SEQ, None)  # no rerank.json: AliMe's
    (model / "rerank.json").write_text(_json.dumps({"rerank_score": "pmi", "pmi_weight": 0.7}))
    assert runner.engine_scorer(model) == (ScorerName.PMI, 0.7)
    opts = runner.ThresholdOptions(scorer="seq2seq")
    with _pytest.raises(ValueError, match="reranks with pmi"):
        runner.run_threshold(
            tmp_path / "unused.txt",
            model,
            tmp_path / "out",
            opts,
            runner.SelectOptions(pmi_weight=0.7),
            write_model=True,
        )
    with _pytest.raises(ValueError, match="pmi weight 0.7"):
        runner.run_threshold(
            tmp_path / "unused.txt",
            model,
            tmp_path / "out",
            runner.ThresholdOptions(),
            runner.SelectOptions(pmi_weight=0.5),
            write_model=True,
        )
