"""The `alime` command line, run as a user would (a subprocess, a temporary ALIME_HOME)."""

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def run(tmp_path):
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    config = tmp_path / "alime.toml"
    config.write_text('[paths]\nmodel = "none"\n')

    def _run(*args, check=True):
        proc = subprocess.run(
            [sys.executable, "-m", "alime", "--config", str(config), *args],
            capture_output=True, text=True, env=env, timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"alime {args} failed ({proc.returncode}): {proc.stderr}")
        return proc

    return _run


def test_default_kb_search_json(run):
    out = run("search", "什么时候发货", "--k", "3", "--json").stdout
    body = json.loads(out)
    assert body["query_tokens"][:3] == ["什么", "时候", "发货"]
    assert len(body["results"]) == 3
    assert set(body["results"][0]) == {"id", "question", "answer", "score"}
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def _bundled_entries() -> int:
    from alime.bot import BUNDLED_KB

    return len(BUNDLED_KB.read_text(encoding="utf-8").splitlines())


def test_kb_lifecycle_and_errors(run, tmp_path):
    stats = json.loads(run("kb", "stats").stdout)
    seeded = _bundled_entries()
    assert stats["pairs"] == seeded  # seeded from the bundled curated KB
    bad = tmp_path / "bad.tsv"
    bad.write_text("能 开 发票 吗\t可以\n坏 的 一行\n", encoding="utf-8")
    proc = run("kb", "import", str(bad), "--format", "tsv", check=False)
    assert proc.returncode == 2 and f"{bad}:2:" in proc.stderr
    assert json.loads(run("kb", "stats").stdout)["pairs"] == seeded  # nothing half-imported
    out = json.loads(run("kb", "import", str(bad), "--format", "tsv", "--skip-bad").stdout)
    assert out == {"imported": 1, "skipped": 1, "total": seeded + 1}

    added = json.loads(run("kb", "add", "--question", "支持 数字人民币 吗", "--answer", "支持").stdout)
    hits = json.loads(run("search", "数字人民币", "--json").stdout)["results"]
    assert hits[0]["id"] == added["id"]
    run("kb", "edit", str(added["id"]), "--answer", "暂不支持")
    hits = json.loads(run("search", "数字人民币", "--json").stdout)["results"]
    assert hits[0]["answer"] == "暂不支持"
    # A phrasing makes the entry findable by words its primary question lacks.
    assert all(h["id"] != added["id"] for h in json.loads(run("search", "e-CNY", "--json").stdout)["results"])
    edited = json.loads(run("kb", "edit", str(added["id"]), "--phrasing", "能 用 e-CNY 付款 吗").stdout)
    assert edited["phrasings"] == ["能 用 e-CNY 付款 吗"]
    hits = json.loads(run("search", "e-CNY", "--json").stdout)["results"]
    assert hits[0]["id"] == added["id"]
    run("kb", "delete", str(added["id"]))
    hits = json.loads(run("search", "数字人民币", "--json").stdout)["results"]
    assert all(h["id"] != added["id"] for h in hits)
    proc = run("kb", "delete", str(added["id"]), check=False)
    assert proc.returncode == 2 and "no QA pair with id" in proc.stderr

    exported = run("kb", "export", "--format", "jsonl").stdout.splitlines()
    assert len(exported) == seeded + 1
    first = json.loads(exported[0])
    assert first["question"] and isinstance(first["phrasings"], list)


def test_usage_errors(run, tmp_path):
    proc = run("kb", "import", str(tmp_path / "missing.tsv"), "--format", "tsv", check=False)
    assert proc.returncode == 2 and "no such file" in proc.stderr
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[retrieval]\nkk = 1\n")
    proc = subprocess.run([sys.executable, "-m", "alime", "--config", str(bad_config), "kb", "stats"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown config key" in proc.stderr
