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
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
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

    added = json.loads(
        run("kb", "add", "--question", "支持 数字人民币 吗", "--answer", "支持").stdout
    )
    hits = json.loads(run("search", "数字人民币", "--json").stdout)["results"]
    assert hits[0]["id"] == added["id"]
    run("kb", "edit", str(added["id"]), "--answer", "暂不支持")
    hits = json.loads(run("search", "数字人民币", "--json").stdout)["results"]
    assert hits[0]["answer"] == "暂不支持"
    # A phrasing makes the entry findable by words its primary question lacks.
    assert all(
        h["id"] != added["id"]
        for h in json.loads(run("search", "e-CNY", "--json").stdout)["results"]
    )
    edited = json.loads(
        run("kb", "edit", str(added["id"]), "--phrasing", "能 用 e-CNY 付款 吗").stdout
    )
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
    proc = subprocess.run(
        [sys.executable, "-m", "alime", "--config", str(bad_config), "kb", "stats"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "unknown config key" in proc.stderr


# -- issue 12: bad input files and arguments give FILE:LINE: message and exit 2 -----------------
def refused(proc, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_kb_import_refuses_hostile_files(run, tmp_path):
    from tests.kb.test_formats import alias_bomb

    bomb = tmp_path / "bomb.yml"
    bomb.write_text(alias_bomb(), encoding="utf-8")
    refused(
        run("kb", "import", str(bomb), "--format", "chatterbot", check=False),
        f"{bomb}:2: YAML aliases are not allowed (*l0)",
    )

    huge = tmp_path / "huge.tsv"
    huge.write_text("问" * (10 * 1024 * 1024 // 3) + "\t答\n", encoding="utf-8")
    refused(
        run("kb", "import", str(huge), "--format", "tsv", check=False),
        f"{huge}:1: line is longer than 262144 bytes",
    )

    late = tmp_path / "late.tsv"
    late.write_bytes(
        "".join(f"问题 {i}\t答案 {i}\n" for i in range(5000)).encode()
        + "问题\t".encode()
        + b"\xff\n"
    )
    refused(
        run("kb", "import", str(late), "--format", "tsv", check=False),
        f"{late}:5001: not UTF-8 text (invalid start byte: byte 0xff at byte 8 of the line)",
    )

    surrogate = tmp_path / "s.jsonl"
    surrogate.write_text('{"question": "问\\ud800", "answer": "答"}\n', encoding="utf-8")
    refused(
        run("kb", "import", str(surrogate), "--format", "jsonl", check=False),
        f"{surrogate}:1: question contains a lone surrogate U+D800 at character 2",
    )

    deep = tmp_path / "deep.jsonl"
    deep.write_text(
        '{"question": "能 开 专票 吗", "answer": "可以"}\n' + "[" * 100_000 + "]" * 100_000 + "\n",
        encoding="utf-8",
    )
    refused(
        run("kb", "import", str(deep), "--format", "jsonl", check=False),
        f"{deep}:2: JSON nested deeper than 20 levels",
    )
    seeded = _bundled_entries()
    assert json.loads(run("kb", "stats").stdout)["pairs"] == seeded  # nothing half-imported
    proc = run("kb", "import", str(deep), "--format", "jsonl", "--skip-bad")
    assert json.loads(proc.stdout) == {"imported": 1, "skipped": 1, "total": seeded + 1}
    assert f"skipped {deep}:2: JSON nested deeper than 20 levels" in proc.stderr


def test_kb_import_limits_come_from_the_config(run, tmp_path):
    config = tmp_path / "limits.toml"
    config.write_text('[paths]\nmodel = "none"\n[kb]\nmax_field_chars = 3\n')
    data = tmp_path / "x.tsv"
    data.write_text("一二三四\t答\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alime",
            "--config",
            str(config),
            "kb",
            "import",
            str(data),
            "--format",
            "tsv",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ALIME_HOME": str(tmp_path / "home")},
    )
    refused(proc, f"{data}:1: question is longer than 3 characters")
    config.write_text("[kb]\nmax_depth = 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "alime", "--config", str(config), "kb", "stats"],
        capture_output=True,
        text=True,
    )
    refused(proc, "config key 'kb.max_depth' must be a positive integer")


def test_kb_ids_and_text_arguments_are_checked(run):
    too_big = "9" * 20  # issue 12: OverflowError from SQLite
    for args in (
        ("kb", "delete", too_big),
        ("kb", "edit", too_big, "--answer", "x"),
        ("kb", "delete", "0"),
        ("kb", "list", "--offset", too_big),
    ):
        refused(
            run(*args, check=False), f"must be from {0 if 'list' in args else 1} to {2**63 - 1}"
        )
    refused(run("kb", "delete", "abc", check=False), "'abc' is not an integer")
    # argv bytes that are not UTF-8 arrive as lone surrogates (surrogateescape)
    proc = run(
        "kb", "add", "--question", "发票".encode() + b"\xff", "--answer", "可以", check=False
    )
    refused(
        proc,
        "--question is not valid UTF-8 text: it contains a lone surrogate U+DCFF at character 3",
    )


def test_kb_export_neutralizes_formula_cells(run, tmp_path):
    added = json.loads(
        run("kb", "add", "--question", '=HYPERLINK("http://x")', "--answer=-5 元").stdout
    )
    out = tmp_path / "kb.tsv"
    run("kb", "export", "--out", str(out))
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == _bundled_entries() + 1 and lines[-1] == "'=HYPERLINK(\"http://x\")\t'-5 元"
    raw = run("kb", "export", "--raw-cells").stdout.splitlines()
    assert raw[-1] == '=HYPERLINK("http://x")\t-5 元'
    from alime.kb.formats import neutralize_cell

    assert [[neutralize_cell(c) for c in line.split("\t")] for line in raw] == [
        line.split("\t") for line in lines
    ]
    from alime.kb.formats import FORMULA_PREFIXES

    formula_lines = sum(
        any(c.startswith(FORMULA_PREFIXES) for c in line.split("\t")) for line in raw
    )
    assert sum(line != safe for line, safe in zip(raw, lines, strict=True)) == formula_lines >= 1
    jsonl = json.loads(run("kb", "export", "--format", "jsonl").stdout.splitlines()[-1])
    assert (jsonl["id"], jsonl["question"]) == (added["id"], '=HYPERLINK("http://x")')


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """``alime kb stats | head``: the reader closes the pipe before alime writes; alime stops
    quietly with 141 (128 + SIGPIPE), as Unix tools do, instead of a BrokenPipeError traceback."""
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alime", "kb", "stats"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    proc.stdout.close()  # long before the interpreter has started and printed anything
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_evaluate_actions_keep_the_global_config(tmp_path):
    """``alime --config FILE evaluate retrieval|routing``: the actions do not declare a --config
    of their own, which would reset the global one to None."""
    from alime.cli import build_parser

    for action in ("retrieval", "routing", "natural", "select"):
        extra = ["--data", "x"] if action in ("natural", "select") else []
        args = build_parser().parse_args(["--config", "c.toml", "evaluate", action, *extra])
        assert args.config == "c.toml", action
