"""`alime chat` names each reply's rule (a subprocess, a temporary ALIME_HOME, no model)."""

import os
import subprocess
import sys


def test_chat_prints_the_rule_and_what_it_compared(tmp_path):
    config = tmp_path / "alime.toml"
    config.write_text('[paths]\nmodel = "none"\n')
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "alime", "--config", str(config), "chat"],
        input="我要投诉\n讲个笑话\n什么时候发货\n\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("[")]
    assert lines[0] == "[fallback, rule complaint, matched 投诉, hand-off]"
    assert lines[1] == "[chitchat, rule chitchat, score 1.000, threshold 0.800, matched 讲个笑话]"
    assert lines[2].startswith("[retrieval, rule faq, score ") and "threshold 0.000" in lines[2]


def test_show_candidates_names_the_score_it_prints(tmp_path):
    """Each candidate's retrieval score is labelled with what it is: bm25 without a model,
    fused with the default hybrid retrieval (it was always labelled bm25)."""
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    labels = {}
    for name, toml in (("bm25", '[paths]\nmodel = "none"\n'), ("fused", "")):
        config = tmp_path / f"{name}.toml"
        config.write_text(toml)
        proc = subprocess.run(
            [sys.executable, "-m", "alime", "--config", str(config), "chat", "--show-candidates"],
            input="什么时候发货\n\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
        )
        rows = [line.split()[1] for line in proc.stdout.splitlines() if line.strip()[:1] == "#"]
        assert rows, proc.stdout
        labels[name] = set(rows)
    assert labels == {"bm25": {"bm25"}, "fused": {"fused"}}
