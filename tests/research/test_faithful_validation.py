"""research/faithful_validation.py: groups, pools, the profile and its check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alime.evaluation.corpus import Group, read_groups
from alime.kb.formats import EcommerceRow as Row
from research import faithful_validation as fv

ROOT = Path(__file__).resolve().parents[2]
DEV = Path("/work/shared/data/ecommerce/dev.txt")
MODEL = ROOT / "data" / "model"
FAITHFUL_FILE = ROOT / "data" / "eval" / "valid_faithful.txt"

REPLIES = [
    "付款 后 48 小时 内 发货",
    "发 中通 快递",
    "满 99 包邮",
    "七天 无理由 退货",
    "首页 领 优惠券",
    "保证 正品",
    "参考 尺码 表",
    "已经 最低价",
    "三 到 五 天 到货",
    "发货 前 可以 改 地址",
    "送 小礼物",
    "支付宝 付款",
]
CORPUS_REPLIES = [f"亲 发货 快递 {w} 的 呢 哦" for w in "甲乙丙丁戊己庚辛壬癸子丑寅卯"]


def _source() -> fv.Source:
    dialogues = [Row(1, ("在 吗", f"什么 时候 发货 {i}"), r, i + 1) for i, r in enumerate(REPLIES)]
    return fv.Source(dialogues, [*CORPUS_REPLIES, REPLIES[0]])


def _pipeline():
    return fv._pipeline()


@pytest.mark.parametrize("name", sorted(fv.CONSTRUCTIONS))
def test_every_construction_builds_groups_of_ten_distinct_replies(name):
    source = _source()
    c = fv.CONSTRUCTIONS[name]
    groups = fv.build_groups(source.dialogues[:4], source, c, _pipeline().index_terms, seed=3)
    assert len(groups) == 4
    pool_keys = {fv.response_key(r) for r in fv.candidate_pool(source, c.pool)}
    for d, g in zip(source.dialogues[:4], groups, strict=True):
        assert len(g.responses) == 10
        assert g.true_response == d.response
        keys = [fv.response_key(r) for r in g.responses]
        assert len(set(keys)) == 10, "wrong candidates are distinct and never the real one"
        wrong = [k for i, k in enumerate(keys) if i != g.true_index]
        if c.index is fv.IndexKind.RESPONSES:
            assert set(wrong) <= pool_keys


def test_unseen_pool_holds_no_dialogue_reply():
    source = _source()
    pool = fv.candidate_pool(source, fv.PoolKind.UNSEEN)
    assert sorted(pool) == sorted(CORPUS_REPLIES)  # REPLIES[0] is a dialogue's real reply
    assert len(fv.candidate_pool(source, fv.PoolKind.LABEL0)) == len(CORPUS_REPLIES) + 1


def test_turns_pool_adds_the_responder_turns_only():
    d = Row(1, ("问 一", "答 一", "问 二"), "答 二", 1)
    pool = fv.candidate_pool(fv.Source([d]), fv.PoolKind.TURNS)
    assert pool == ["答 二", "答 一"]


def test_build_is_seeded():
    source = _source()
    c = fv.CONSTRUCTIONS[fv.FAITHFUL]
    a = fv.build_groups(source.dialogues, source, c, _pipeline().index_terms, seed=5)
    b = fv.build_groups(source.dialogues, source, c, _pipeline().index_terms, seed=5)
    assert a == b
    positions = {g.true_index for g in a}
    assert len(positions) > 1, "the real reply's position is random"


def test_construction_rejects_bad_settings():
    with pytest.raises(ValueError, match="depth"):
        fv.Construction(depth=5)
    with pytest.raises(ValueError, match="random"):
        fv.Construction(random=10)


def test_heldout_lines_refuse_a_model_without_the_file(tmp_path):
    (tmp_path / "training.json").write_text(json.dumps({"split": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="refusing"):
        fv.heldout_lines(tmp_path, "dev.txt")
    (tmp_path / "training.json").write_text(
        json.dumps({"split": {"valid_dialogue_lines": {"/x/dev.txt": [3, 5]}}}), encoding="utf-8"
    )
    assert fv.heldout_lines(tmp_path, "/y/dev.txt") == {3, 5}


def test_profile_counts_ties_against_and_reads_the_prior():
    responses = tuple(["发货 了"] + [f"其他 回复 很 长 {i} 的" for i in range(9)])
    groups = [Group(("什么 时候 发货",), responses, 0, 1)]
    prior = {r: -1.0 for r in responses}
    measured = fv.profile(
        groups, _pipeline().index_terms, _pipeline().tokenize, lambda rs: [prior[r] for r in rs]
    )
    # the real reply is the only one sharing 发货 and the shortest; every prior ties
    assert measured == {"bm25": 1.0, "anti_bm25": 0.0, "shorter": 1.0, "prior": 0.0}


def test_profile_failures_name_the_baselines_out_of_tolerance():
    measured = dict(fv.OFFICIAL_PROFILE)
    assert fv.profile_failures(measured) == []
    measured["prior"] = fv.OFFICIAL_PROFILE["prior"] - 0.06
    measured["bm25"] = fv.OFFICIAL_PROFILE["bm25"] + 0.04
    failures = fv.profile_failures(measured, tolerance=0.05)
    assert len(failures) == 1 and failures[0].startswith("prior")


def test_check_profile_needs_the_model(tmp_path, capsys):
    assert fv.main(["profile", "--data", str(FAITHFUL_FILE), "--check-profile"]) == 2
    assert "--check-profile needs --model" in capsys.readouterr().err


def test_bundled_faithful_file_model_free_profile_matches_the_official_test():
    groups = read_groups(FAITHFUL_FILE)
    assert len(groups) == 500
    measured = fv.profile(groups, _pipeline().index_terms, _pipeline().tokenize)
    assert set(measured) == {"bm25", "anti_bm25", "shorter"}
    assert fv.profile_failures(measured) == [], measured


def test_old_context_negative_file_fails_the_model_free_profile():
    groups = read_groups(ROOT / "data" / "eval" / "valid_ctxneg.txt")
    measured = fv.profile(groups, _pipeline().index_terms, _pipeline().tokenize)
    assert [f.split(":")[0] for f in fv.profile_failures(measured)] == ["anti_bm25", "shorter"]


@pytest.mark.skipif(not DEV.is_file(), reason="needs the shared E-commerce dev split")
def test_faithful_file_is_rebuilt_exactly_from_the_held_out_dialogues(tmp_path):
    out = tmp_path / "valid.txt"
    assert fv.main(["build", "--model", str(MODEL), "--from", str(DEV), "--out", str(out)]) == 0
    assert out.read_bytes() == FAITHFUL_FILE.read_bytes()
    held = fv.heldout_lines(MODEL, DEV)
    source = fv.read_source(DEV)
    contexts = {d.turns for d in source.dialogues if d.line in held}
    assert {g.turns for g in read_groups(out)} == contexts


@pytest.mark.skipif(not DEV.is_file(), reason="needs the shared E-commerce dev split")
def test_train_side_groups_hold_no_validation_dialogue(tmp_path):
    out = tmp_path / "train.txt"
    code = fv.main(
        ["build", "--side", "train", "--model", str(MODEL), "--from", str(DEV), "--out", str(out)]
    )
    assert code == 0
    held = fv.heldout_lines(MODEL, DEV)
    training = [d for d in fv.read_source(DEV).dialogues if d.line not in held]
    groups = read_groups(out)
    assert len(groups) == len(training) == 4500
    assert {g.turns for g in groups} == {d.turns for d in training}


@pytest.mark.slow
def test_check_profile_with_the_model(capsys):
    """The check run before any model is scored on the faithful file: all four baselines."""
    code = fv.main(
        ["profile", "--data", str(FAITHFUL_FILE), "--model", str(MODEL), "--check-profile"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "failures" not in captured.out  # the table, not JSON
    code = fv.main(
        [
            "profile",
            "--data",
            str(ROOT / "data" / "eval" / "valid_ctxneg.txt"),
            "--model",
            str(MODEL),
            "--check-profile",
            "--json",
        ]
    )
    assert code == 2
    report = json.loads(capsys.readouterr().out)
    assert report["r10@1"]["prior"] < 0.2
    assert any(f.startswith("prior") for f in report["failures"])
