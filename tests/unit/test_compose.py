"""docker-compose.yml and the Dockerfile stay in step with the settings (no Docker needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from esrag.settings import Settings
from query.api.security import check_bind

ROOT = Path(__file__).resolve().parents[2]
FIELDS = Settings.model_fields


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _default(name: str) -> Any:
    return FIELDS[name].get_default(call_default_factory=True)


def _container_ports(service: dict[str, Any]) -> list[int]:
    return [int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"elasticsearch", "redis", "worker", "api"}


def test_every_esrag_variable_is_a_settings_field(compose: dict[str, Any]) -> None:
    names = {k for svc in compose["services"].values() for k in _env(svc) if k.startswith("ESRAG_")}
    assert {"ESRAG_ES_URL", "ESRAG_REDIS_URL", "ESRAG_QUEUE"} <= names
    unknown = sorted(n for n in names if n[len("ESRAG_"):].lower() not in FIELDS)
    assert unknown == []


def test_esrag_values_validate(compose: dict[str, Any]) -> None:
    for name in ("worker", "api"):
        env = _env(compose["services"][name])
        values = {k[len("ESRAG_"):].lower(): v for k, v in env.items() if k.startswith("ESRAG_")}
        # Settings parses env strings (JSON for lists) the same way when read from the env.
        settings = Settings.model_validate(
            {k: yaml.safe_load(v) if v.startswith("[") else v for k, v in values.items()}
        )
        assert settings.es_url == "http://elasticsearch:9200"
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.queue == "ingest"


def test_es_image_is_the_settings_version(compose: dict[str, Any]) -> None:
    es = compose["services"]["elasticsearch"]
    image, tag = es["image"].rsplit(":", 1)
    assert image == "docker.elastic.co/elasticsearch/elasticsearch"
    assert tag == _default("es_version") == "8.19.21"
    env = _env(es)
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "false"
    assert "esdata:/usr/share/elasticsearch/data" in es["volumes"]
    assert "/_cluster/health" in " ".join(es["healthcheck"]["test"])


def test_redis_has_aof_and_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "redisdata:/data" in redis["volumes"]
    assert set(compose["volumes"]) == {"esdata", "redisdata"}


def test_serving_services_have_healthchecks(compose: dict[str, Any]) -> None:
    serving = [name for name, svc in compose["services"].items() if svc.get("ports")]
    assert sorted(serving) == ["api", "elasticsearch", "redis"]
    for name in serving:
        assert compose["services"][name]["healthcheck"]["test"], name


def test_ports_agree_with_defaults(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    es_port = urlparse(_default("es_url")).port
    redis_port = urlparse(_default("redis_url")).port
    assert _container_ports(svc["elasticsearch"]) == [es_port] == [9200]
    assert _container_ports(svc["redis"]) == [redis_port] == [6379]
    assert _container_ports(svc["api"]) == [_default("api_port")] == [8000]
    env = _env(svc["api"])
    assert urlparse(env["ESRAG_ES_URL"]).port == es_port
    assert urlparse(env["ESRAG_REDIS_URL"]).port == redis_port
    assert int(env["ESRAG_API_PORT"]) == _default("api_port")
    assert f"127.0.0.1:{_default('api_port')}/healthz" in " ".join(svc["api"]["healthcheck"]["test"])
    assert env["ESRAG_API_HOST"] == "0.0.0.0" and env["ESRAG_API_KEYS"].startswith('["')  # serve needs keys


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution (what `docker compose` does)."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":?", "?") and not value:
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and not value:
            return arg
        return value or ""
    return _VAR.sub(one, text.replace("$$", "\x00")).replace("\x00", "$")


def test_api_needs_a_user_supplied_key() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in text
    # no variable in the file falls back to a default (a default key is a published key)
    assert [m.group(0) for m in _VAR.finditer(text) if m.group(2) in (":-", "-")] == []
    with pytest.raises(ValueError, match="required variable API_KEY is missing a value"):
        _interpolate(text, {})
    compose = yaml.safe_load(_interpolate(text, {"API_KEY": "k-3f9a2c41d7e8"}))
    env = _env(compose["services"]["api"])
    settings = Settings.model_validate({"api_keys": json.loads(env["ESRAG_API_KEYS"]),
                                        "api_host": env["ESRAG_API_HOST"]})
    assert settings.api_keys == ["k-3f9a2c41d7e8"]
    check_bind(settings, settings.api_host)  # a keyed API may bind 0.0.0.0


def test_workers_and_api_commands(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    assert svc["worker"]["command"] == ["worker"]
    assert svc["worker"]["deploy"]["replicas"] == 2
    assert svc["api"]["command"][:3] == ["serve", "--host", "0.0.0.0"]
    for name in ("worker", "api"):
        deps = svc[name]["depends_on"]
        assert deps == {"elasticsearch": {"condition": "service_healthy"},
                        "redis": {"condition": "service_healthy"}}


def test_dockerfile() -> None:
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    assert 'ENTRYPOINT ["esrag"]' in lines
    assert "USER esrag" in lines


def test_dockerfile_copies_every_package_the_wheel_holds() -> None:
    """`pip install .` in the image builds from what was copied: a package left out of the
    COPY lines (server/ is the newest) would be missing from the image's wheel."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in include["include"]}
    copied = {m.group(1) for m in re.finditer(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M)}
    assert packages == {"esrag", "ingest", "workers", "query", "dashboard", "server"}
    assert packages <= copied, f"Dockerfile lacks COPY lines for {sorted(packages - copied)}"
