"""esrag/settings.py reads the environment as pydantic-settings' BaseSettings would (it no
longer imports pydantic-settings, to start quicker): the same values, the same fields marked
as set, arguments over the environment, aliases without the prefix, JSON for lists."""

from __future__ import annotations

import os

import pytest
from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from esrag.errors import ConfigError
from esrag.settings import Settings, load_settings


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ESRAG_", extra="ignore", populate_by_name=True)


# the same fields (types, defaults, constraints, aliases) on pydantic-settings' BaseSettings
Reference = create_model("Reference", __base__=_Base,
                         **{name: (f.annotation, f) for name, f in Settings.model_fields.items()})
# their defaults come from validators, which the reference does not carry
DERIVED = ("task_time_limit", "task_soft_time_limit")

ENVIRONMENTS = [  # (environment, the fields it sets)
    ({}, set()),
    ({"ESRAG_INDEX": "faq", "ESRAG_SHARDS": "3", "ESRAG_RERANK": "true", "ESRAG_KNN_OVERSAMPLE": "2.5",
      "ESRAG_FUSION": "rrf", "ESRAG_ES_PASSWORD": "pw-1234", "ESRAG_EMBED_MODEL_PATH": "/models/m",
      "ESRAG_TORCH_THREADS": "2", "ESRAG_LLM_PREFIX_CACHE": "0"},
     {"index", "shards", "rerank", "knn_oversample", "fusion", "es_password", "embed_model_path",
      "torch_threads", "llm_prefix_cache"}),
    ({"esrag_es_url": "http://a:9200,http://b:9200", "Esrag_Redis_Url": "redis://r:6379/1",
      "ESRAG_API_KEYS": '["k-one-key", "k-two-key"]', "ESRAG_SHARED_ROOTS": '["/srv/a", "/srv/b"]',
      "ESRAG_ALLOWED_ROOTS": "[]", "ESRAG_LLM_URL": ""},
     {"es_url", "redis_url", "api_keys", "shared_roots", "allowed_roots", "llm_url"}),
    ({"JAVA_HOME": "/usr/lib/jvm/a"}, {"java_home"}),
    ({"JAVA_HOME": "/usr/lib/jvm/a", "ES_JAVA_HOME": "/usr/lib/jvm/b"}, {"java_home"}),
    ({"JAVA_HOME": "/usr/lib/jvm/a", "ES_JAVA_HOME": "/usr/lib/jvm/b", "ESRAG_JAVA_HOME": "/usr/lib/jvm/c"},
     {"java_home"}),
    ({"ESRAG_UNKNOWN_THING": "x", "ESRAG_QUEUE": "bulk"}, {"queue"}),
]


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.upper().startswith("ESRAG_") or key.upper() in ("JAVA_HOME", "ES_JAVA_HOME"):
            monkeypatch.delenv(key)
    return monkeypatch


def values(settings: object) -> dict[str, object]:
    return {n: getattr(settings, n) for n in Settings.model_fields if n not in DERIVED}


@pytest.mark.parametrize(("env", "fields_set"), ENVIRONMENTS)
def test_reads_the_environment_as_base_settings(clean_env: pytest.MonkeyPatch, env: dict[str, str],
                                                fields_set: set[str]) -> None:
    for key, value in env.items():
        clean_env.setenv(key, value)
    ours, reference = load_settings(), Reference()
    assert ours.model_fields_set == reference.model_fields_set == fields_set
    assert values(ours) == values(reference)


def test_arguments_win_and_are_validated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ESRAG_INDEX", "from-env")
    clean_env.setenv("ESRAG_SHARDS", "2")
    s = load_settings(index="from-arg")
    assert (s.index, s.shards) == ("from-arg", 2)
    assert s.model_fields_set == {"index", "shards"}
    assert Settings(shards=4).shards == 4  # the class itself reads the environment, as BaseSettings did
    assert Settings().index == "from-env"
    with pytest.raises(ConfigError, match=r"^invalid setting ESRAG_SHARDS: Input should be greater than or "
                                          r"equal to 1$"):
        load_settings(shards=0)


def test_bad_json_list_is_one_line(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ESRAG_API_KEYS", "k1,k2")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == 'invalid setting ESRAG_API_KEYS: not JSON (a list is written ["a", "b"])'
    assert caught.value.exit_code == 2


def test_bad_value_from_the_environment_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ESRAG_ES_HEAP", "lots")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == "invalid setting ESRAG_ES_HEAP: String should match pattern '^\\d+[mg]$'"
