"""The state directory is per project: ALIME_HOME, else beside the config file, else the
checkout."""

import os
import subprocess
import sys

from alime.config import PACKAGE_ROOT, AppConfig, PathsConfig, alime_home, load_config


def test_alime_home_overrides_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIME_HOME", str(tmp_path / "h"))
    assert alime_home() == tmp_path / "h"
    assert alime_home(str(tmp_path / "other")) == tmp_path / "h"
    assert (
        AppConfig(paths=PathsConfig(state=str(tmp_path / "s"))).resolved_paths()[0]
        == tmp_path / "h" / "kb.sqlite"
    )


def test_without_alime_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIME_HOME", raising=False)
    # A config file's project keeps its state beside the file.
    config_file = tmp_path / "proj" / "alime.toml"
    config_file.parent.mkdir()
    config_file.write_text('[paths]\nmodel = "none"\n')
    config = load_config(config_file)
    assert config.state_dir() == tmp_path / "proj" / "var"
    assert config.resolved_paths()[:2] == (
        tmp_path / "proj" / "var" / "kb.sqlite",
        tmp_path / "proj" / "var" / "kb.index",
    )
    # [paths] state is resolved against the file's folder like every path.
    config_file.write_text('[paths]\nstate = "data/state"\n')
    assert load_config(config_file).state_dir() == tmp_path / "proj" / "data" / "state"
    # No file: the checkout alime runs from (this test runs from one).
    assert (PACKAGE_ROOT / "pyproject.toml").is_file()
    assert AppConfig().state_dir() == PACKAGE_ROOT / "var"


def test_two_projects_do_not_share_a_kb(tmp_path):
    """Two project folders, each with its config, each get their own KB (it was one ~/.alime)."""
    env = {k: v for k, v in os.environ.items() if k != "ALIME_HOME"}
    for name, question in (("one", "第一 个 问题"), ("two", "第二 个 问题")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "alime.toml").write_text('[paths]\nmodel = "none"\n')
        (folder / "qa.tsv").write_text(f"{question}\t答案\n", encoding="utf-8")
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "alime",
                "--config",
                "alime.toml",
                "kb",
                "import",
                "qa.tsv",
                "--format",
                "tsv",
            ],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    for name in ("one", "two"):
        assert (tmp_path / name / "var" / "kb.sqlite").is_file()
    from alime.kb.store import KnowledgeBase

    one, two = (
        {p.question for p in KnowledgeBase(tmp_path / n / "var" / "kb.sqlite").iter_pairs()}
        for n in ("one", "two")
    )
    assert "第一 个 问题" in one and "第一 个 问题" not in two
    assert "第二 个 问题" in two and "第二 个 问题" not in one
