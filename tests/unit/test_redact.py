"""The one redaction helper: every form a credential takes in a URL, a query string or a message."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from esrag.redact import redact, redact_url
from esrag.settings import Settings


@pytest.mark.parametrize(("text", "expected"), [
    ("http://elastic:changeme@es:9200", "http://es:9200"),
    ("http://elastic@es:9200/", "http://es:9200/"),  # a user name alone goes too
    ("redis://:p%40ss%3Aw0rd@redis:6379/0", "redis://redis:6379/0"),  # URL-encoded password
    ("redis://user:p@ss@redis:6379/0", "redis://redis:6379/0"),  # a raw "@" in the password
    ("https://u:p@a:9200,https://u:q@b:9200", "https://a:9200,https://b:9200"),
    ("GET /dashboard?key=esk_abc&x=1", "GET /dashboard?key=***&x=1"),
    ("/v1/x?api_key=abc&token=def&password=ghi", "/v1/x?api_key=***&token=***&password=***"),
    ("Authorization: Bearer esk_abc.def", "Authorization: Bearer ***"),
    ('{"X-API-Key": "esk_abc"}', '{"X-API-Key": "***"}'),
    ("nothing secret at http://es:9200/_search?q=a", "nothing secret at http://es:9200/_search?q=a"),
])
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_known_secrets_are_removed_also_url_encoded() -> None:
    assert redact("failed: bad password s3cr@t! and s3cr%40t%21", ["s3cr@t!"]) == \
        "failed: bad password *** and ***"


def test_redact_url_and_settings() -> None:
    assert redact_url("http://a:b@h1:1, http://c:d@h2:2") == "http://h1:1,http://h2:2"
    s = Settings(es_url="https://elastic:pw%2Fx@es:9200", redis_url="redis://:r3dis-pw@127.0.0.1:6379/0",
                 es_password=SecretStr("es-secret-pw"), api_keys=["flat-admin-key"],
                 llm_api_key=SecretStr("sk-llm-key"))
    assert s.safe_es_url == "https://es:9200"
    assert s.safe_redis_url == "redis://127.0.0.1:6379/0"
    text = "es-secret-pw flat-admin-key sk-llm-key redis://:r3dis-pw@127.0.0.1:6379/0"
    assert s.redact(text) == "*** *** *** redis://127.0.0.1:6379/0"
