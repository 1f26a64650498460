"""Scoped keys: the key file, principals, the scope merge, loopback names (no services)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esrag.cli import main
from esrag.errors import ConfigError
from esrag.keys import ANONYMOUS, KeyFile, KeySpecError, Principal, identify, key_hash, keyed
from esrag.settings import Settings
from query import scope
from query.api.security import _host_name, is_loopback
from query.filters import filter_clauses


def test_roles_nest_and_index_patterns() -> None:
    read = Principal("r", "read", {"meta.t": "a"})
    ingest = Principal("i", "ingest", {}, "team-a*")
    admin = Principal("a", "admin")
    assert [read.allows(r) for r in ("read", "ingest", "admin")] == [True, False, False]
    assert [ingest.allows(r) for r in ("read", "ingest", "admin")] == [True, True, False]
    assert admin.allows("admin")
    assert read.may_use_index("esrag", "esrag") and not read.may_use_index("other", "esrag")
    assert ingest.may_use_index("team-a-docs", "esrag") and not ingest.may_use_index("team-b", "esrag")
    assert not ingest.may_use_index("esrag", "esrag")
    assert admin.may_use_index("anything", "esrag")


def test_key_file_stores_hashes_and_identifies(tmp_path: Path) -> None:
    s = Settings(api_key_file=tmp_path / "k.json")
    assert not keyed(s) and identify(s, None) is ANONYMOUS
    kf = KeyFile(s.key_file)
    key = kf.add("acme", "read", {"meta.tenant": "acme"}, None)
    assert key.startswith("esk_") and len(key) > 40
    stored = json.loads(kf.path.read_text())["keys"]
    assert stored[0]["hash"] == key_hash(key) and key not in kf.path.read_text()
    assert keyed(s)
    assert identify(s, key) == Principal("acme", "read", {"meta.tenant": "acme"}, None)
    assert identify(s, key + "x") is None and identify(s, None) is None
    with pytest.raises(KeySpecError, match="a key named 'acme' exists already"):
        kf.add("acme", "read", {}, None)
    kf.revoke("acme")
    assert identify(s, key) is None and keyed(s)  # revoking the last key locks, it does not open
    flat = Settings(api_keys=["flat-key"], api_key_file=tmp_path / "none.json")
    assert identify(flat, "flat-key") == Principal("ESRAG_API_KEYS[0]", "admin")


@pytest.mark.parametrize(("args", "message"), [
    (("n", "root", {}, None), "role 'root' is not one of read, ingest, admin"),
    (("n", "read", {"source": "x"}, None), "key filter 'source' must be meta.<key>"),
    (("n", "read", {"meta.t": ""}, None), "key filter 'meta.t' needs a value"),
    (("bad name", "read", {}, None), "key name 'bad name' must be"),
    (("n", "read", {}, "Team/A"), "index pattern 'Team/A' must be"),
])
def test_bad_key_specs(tmp_path: Path, args: tuple, message: str) -> None:
    with pytest.raises(KeySpecError, match=message.replace("(", r"\(").replace(".", r"\.")):
        KeyFile(tmp_path / "k.json").add(*args)


def test_broken_key_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text('{"keys": [{"name": "x", "role": "read", "hash": "nothex"}]}')
    with pytest.raises(ConfigError, match=r"^invalid key file .*k\.json: key 'x' has no SHA-256 hash$"):
        KeyFile(tmp_path / "k.json").records()


def test_cli_keys_add_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ESRAG_API_KEY_FILE", str(tmp_path / "k.json"))
    assert main(["keys", "add", "acme", "--role", "ingest", "--filter", "meta.tenant=acme",
                 "--index", "acme-*"]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyFile(tmp_path / "k.json").find(key).name == "acme"
    assert main(["keys"]) == 0
    assert capsys.readouterr().out == "acme  role=ingest  filters=meta.tenant=acme  index=acme-*\n"
    assert main(["keys", "add", "x", "--filter", "meta.a"]) == 1
    assert capsys.readouterr().err == "error: filter 'meta.a' is not key=value\n"
    assert main(["keys", "revoke", "acme"]) == 0
    assert main(["keys", "revoke", "acme"]) == 1
    assert capsys.readouterr().err.startswith("error: no key named 'acme' in ")


def test_scope_is_added_and_cannot_be_changed() -> None:
    assert filter_clauses({"doc_id": "d"}) == [{"term": {"doc_id": "d"}}]
    ctx_result = []

    def in_request() -> None:
        scope.bind({"meta.tenant": "acme"})
        ctx_result.append(filter_clauses({"doc_id": "d"}))
        ctx_result.append(filter_clauses(None))
        ctx_result.append(filter_clauses({"meta.tenant": "acme"}))
        with pytest.raises(scope.ScopeError, match="filter 'meta.tenant' is fixed by your API key"):
            filter_clauses({"meta.tenant": "globex"})

    import contextvars

    contextvars.copy_context().run(in_request)
    assert ctx_result == [[{"term": {"doc_id": "d"}}, {"term": {"meta.tenant": "acme"}}],
                          [{"term": {"meta.tenant": "acme"}}], [{"term": {"meta.tenant": "acme"}}]]
    assert filter_clauses(None) == []  # the binding stayed inside its context


@pytest.mark.parametrize(("header", "loopback"), [
    ("localhost", True), ("localhost:8000", True), ("LOCALHOST.", True), ("a.localhost", True),
    ("127.0.0.1:80", True), ("127.9.9.9", True), ("[::1]:8000", True), ("[::1]", True),
    ("localhost.evil.example", False), ("evil.example", False), ("0.0.0.0", False), ("10.0.0.1:8000", False),
    ("[::ffff:10.0.0.1]", False), ("", False),
])
def test_loopback_host_names(header: str, loopback: bool) -> None:
    assert is_loopback(_host_name(header)) is loopback
