import pytest

from alime.config import AppConfig, load_config


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "alime.toml"
    path.write_text('[retrieval]\nk = 5\n[serve]\nport = 9000\n[paths]\nkb = "kb/my.sqlite"\n')
    cfg = load_config(path)
    assert cfg.retrieval.k == 5 and cfg.serve.port == 9000
    assert cfg.paths.kb == str((tmp_path / "kb" / "my.sqlite").resolve())
    assert cfg.engine == AppConfig().engine


def test_unknown_keys_and_wrong_types_are_rejected(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[retrieval]\nkk = 5\n")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['kk'\] in 'retrieval'"):
        load_config(path)
    path.write_text("[serve]\nport = 'eighty'\n")
    with pytest.raises(ValueError, match="serve.port"):
        load_config(path)
    path.write_text("[serve\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_config(path)


def test_model_none_means_retrieval_only():
    from alime.config import PathsConfig

    assert AppConfig(paths=PathsConfig(model="none")).resolved_paths()[2] is None
