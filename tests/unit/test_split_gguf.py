"""Joining a GGUF file split over part packages, and which local model the backend loads."""

import sys

import pytest

from esrag import split_models
from esrag.errors import ConfigError
from esrag.settings import load_settings
from query import local_models


@pytest.fixture()
def parts(tmp_path, monkeypatch):
    """Three importable part packages whose data/ pieces join into a small GGUF-looking file."""
    site = tmp_path / "site"
    pieces = [b"GGUF\x03\x00", b"middle-", b"end"]
    for i, piece in enumerate(pieces, start=1):
        pkg = site / f"fakegguf_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part0{i}.bin").write_bytes(piece)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(split_models.SPLIT_GGUF_MODELS, "fake-model",
                        [f"fakegguf_part{i}" for i in (1, 2, 3)])
    yield b"".join(pieces)
    for i in (1, 2, 3):
        sys.modules.pop(f"fakegguf_part{i}", None)


def test_parts_are_joined_once_into_the_cache(parts, tmp_path):
    path = split_models.split_gguf_path("fake-model", tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / "fake-model.gguf"
    assert path.read_bytes() == parts and oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["fake-model.gguf"]  # no temporary file left
    path.write_bytes(b"GGUF cached")  # a second call reads the cache, it does not join again
    assert split_models.split_gguf_path("fake-model", tmp_path / "cache").read_bytes() == b"GGUF cached"


def test_missing_parts_and_bad_files_are_one_line_errors(parts, tmp_path, monkeypatch):
    monkeypatch.setitem(split_models.SPLIT_GGUF_MODELS, "half", ["fakegguf_part1", "fakegguf_part9"])
    with pytest.raises(ConfigError) as err:
        split_models.split_gguf_path("half", tmp_path)
    assert str(err.value) == ("model half needs the packages fakegguf-part1 .. fakegguf-part9 "
                              "(install them with --no-deps); missing 1 of 2")
    monkeypatch.setitem(split_models.SPLIT_GGUF_MODELS, "notgguf", ["fakegguf_part2", "fakegguf_part3"])
    with pytest.raises(ConfigError, match="^the parts of notgguf do not join into a GGUF file$"):
        split_models.split_gguf_path("notgguf", tmp_path)
    assert not (tmp_path / "models" / "notgguf.gguf").exists()
    with pytest.raises(ConfigError, match="^unknown GGUF model 'nope'"):
        split_models.split_gguf_path("nope", tmp_path)


def test_local_backend_loads_the_named_model_or_the_best_installed(parts, tmp_path, monkeypatch):
    settings = load_settings(cache_dir=tmp_path, llm_local_model="fake-model")
    assert local_models.local_model_path(settings) == tmp_path / "models" / "fake-model.gguf"
    monkeypatch.setattr(local_models, "PREFERENCE", ["fake-model", local_models.SMOLLM2])
    assert local_models.default_local_model() == "fake-model"
    monkeypatch.setattr(local_models, "PREFERENCE", ["absent-model"])
    monkeypatch.setitem(split_models.SPLIT_GGUF_MODELS, "absent-model", ["no_such_part_pkg"])
    with pytest.raises(ConfigError, match="^the local backend needs ESRAG_LLM_MODEL_PATH"):
        local_models.local_model_path(load_settings(cache_dir=tmp_path))
    with pytest.raises(ConfigError, match="^unknown ESRAG_LLM_LOCAL_MODEL 'x'"):
        local_models.local_model_path(load_settings(cache_dir=tmp_path, llm_local_model="x"))
