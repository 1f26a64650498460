"""Scoped API keys: the key file, its records, and who a presented key is.

A key file (``ESRAG_API_KEY_FILE``, default ``<state_dir>/api-keys.json``) holds one record
per key: a name, a role, mandatory filters and an index pattern, and the SHA-256 of the key
(the key itself is shown once, by ``esrag keys add``, and never stored). Keys are 256-bit
random tokens, so a fast hash is enough: there is nothing to guess a dictionary from.

Roles nest: ``read`` searches, asks and reads documents; ``ingest`` may also submit jobs
into indices matching its pattern; ``admin`` may do everything (dashboard, job control,
metrics). The flat ``ESRAG_API_KEYS`` list keeps working: each of its keys is an admin.
A key's filters (``meta.<key>=value``) are added to every query it makes and stamped on
every document it ingests.

The server is *keyed* when ESRAG_API_KEYS is set or the key file exists (even with every
key revoked: revoking the last key locks the API rather than opening it).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from esrag.errors import ConfigError, EsragError
from esrag.settings import Settings

Role = Literal["read", "ingest", "admin"]
ROLES: tuple[Role, ...] = ("read", "ingest", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# the metadata keys a filter may pin (the same form as query filters' meta.<key>)
META_FILTER_KEY = re.compile(r"^meta\.[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,127}$")
_INDEX_PATTERN = re.compile(r"^[a-z0-9*][a-z0-9_\-*]{0,99}$")
KEY_PREFIX = "esk_"


class KeySpecError(EsragError):
    """A key command got a bad name, role, filter or pattern."""


@dataclass(frozen=True)
class Principal:
    """Who a request is: a key's name, role, mandatory filters and index pattern."""

    name: str
    role: Role
    filters: dict[str, str] = field(default_factory=dict)
    index: str | None = None  # fnmatch pattern of usable indices; None: only the server's index

    def allows(self, role: Role) -> bool:
        """True when this principal's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def may_use_index(self, name: str, default: str) -> bool:
        """True when this principal may search or ingest into index ``name``."""
        if self.role == "admin" and self.index is None:
            return True
        if self.index is None:
            return name == default
        return fnmatch.fnmatchcase(name, self.index)


ANONYMOUS = Principal("anonymous", "admin")  # a keyless, loopback-only server


@dataclass
class KeyRecord:
    """One stored key (``hash`` is the SHA-256 hex of the key)."""

    name: str
    role: Role
    hash: str
    filters: dict[str, str] = field(default_factory=dict)
    index: str | None = None
    created: float = 0.0

    def principal(self) -> Principal:
        """The principal this key stands for."""
        return Principal(self.name, self.role, dict(self.filters), self.index)


def key_hash(key: str) -> str:
    """The SHA-256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode()).hexdigest()


def validate(name: str, role: str, filters: dict[str, str], index: str | None) -> None:
    """Raise KeySpecError with one line unless the parts make a valid key."""
    if not _NAME.match(name):
        raise KeySpecError(f"key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    if role not in ROLES:
        raise KeySpecError(f"role {role!r} is not one of {', '.join(ROLES)}")
    for key, value in filters.items():
        if not META_FILTER_KEY.match(key):
            raise KeySpecError(f"key filter {key!r} must be meta.<key> (it is stamped on what the key "
                               "ingests)")
        if not value or len(value) > 1024:
            raise KeySpecError(f"key filter {key!r} needs a value of 1-1024 characters")
    if index is not None and not _INDEX_PATTERN.match(index):
        raise KeySpecError(f"index pattern {index!r} must be lowercase letters, digits, '_', '-' and '*'")


def parse_filter_items(items: list[str]) -> dict[str, str]:
    """``["meta.team=a", ...]`` to a dict; each key once."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KeySpecError(f"filter {item!r} is not key=value")
        if key.strip() in out:
            raise KeySpecError(f"filter key {key.strip()!r} given more than once")
        out[key.strip()] = value
    return out


class KeyFile:
    """The key file: read (re-read when it changes on disk), added to, revoked from."""

    _cache: dict[Path, tuple[tuple[int, int], list[KeyRecord]]] = {}
    _lock = threading.Lock()

    def __init__(self, path: Path):
        self.path = Path(path)

    def exists(self) -> bool:
        """True when the file exists (the server is then keyed)."""
        return self.path.exists()

    def records(self) -> list[KeyRecord]:
        """The stored keys (empty when there is no file)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {self.path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache.get(self.path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        records = self._parse()
        with self._lock:
            self._cache[self.path] = (stamp, records)
        return records

    def _parse(self) -> list[KeyRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            raw = data["keys"]
            records = [KeyRecord(name=r["name"], role=r["role"], hash=r["hash"],
                                 filters=dict(r.get("filters") or {}), index=r.get("index"),
                                 created=float(r.get("created") or 0)) for r in raw]
            for r in records:
                validate(r.name, r.role, r.filters, r.index)
                if not re.fullmatch(r"[0-9a-f]{64}", r.hash):
                    raise ValueError(f"key {r.name!r} has no SHA-256 hash")
        except (OSError, ValueError, KeyError, TypeError, EsragError) as exc:
            raise ConfigError(f"invalid key file {self.path}: {exc}") from None
        return records

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [asdict(r) for r in records]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".api-keys.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add(self, name: str, role: str, filters: dict[str, str], index: str | None) -> str:
        """Store a new key and return it (the only time it is shown)."""
        validate(name, role, filters, index)
        records = self.records()
        if any(r.name == name for r in records):
            raise KeySpecError(f"a key named {name!r} exists already; revoke it first")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        records = [*records, KeyRecord(name=name, role=role, hash=key_hash(key),  # type: ignore[arg-type]
                                       filters=filters, index=index, created=time.time())]
        self._write(records)
        return key

    def revoke(self, name: str) -> None:
        """Remove the key ``name`` (the file stays, so the server stays keyed)."""
        records = self.records()
        if not any(r.name == name for r in records):
            raise KeySpecError(f"no key named {name!r} in {self.path}")
        self._write([r for r in records if r.name != name])

    def find(self, presented: str) -> KeyRecord | None:
        """The record of ``presented`` (constant-time compare of the hashes)."""
        digest = key_hash(presented)
        found = None
        for r in self.records():
            if hmac.compare_digest(digest, r.hash):
                found = r
        return found


def keyed(settings: Settings) -> bool:
    """True when the API requires keys: ESRAG_API_KEYS set or the key file present."""
    return bool(settings.api_keys) or KeyFile(settings.key_file).exists()


def identify(settings: Settings, presented: str | None) -> Principal | None:
    """The principal of a presented key, ANONYMOUS on a keyless server, None for a bad key."""
    if not keyed(settings):
        return ANONYMOUS
    if not presented:
        return None
    for i, k in enumerate(settings.api_keys):
        if hmac.compare_digest(presented.encode(), k.encode()):
            return Principal(f"ESRAG_API_KEYS[{i}]", "admin")
    record = KeyFile(settings.key_file).find(presented)
    return record.principal() if record is not None else None


def stored_hashes(settings: Settings) -> list[tuple[str, Principal]]:
    """(hash, principal) of every valid key, flat ones included (for cookie checks)."""
    out = [(key_hash(k), Principal(f"ESRAG_API_KEYS[{i}]", "admin")) for i, k in enumerate(settings.api_keys)]
    out += [(r.hash, r.principal()) for r in KeyFile(settings.key_file).records()]
    return out


def principal_of(request: Any) -> Principal:
    """The principal the API's ``require_role`` stored on a request (no access without it)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise RuntimeError(f"route {request.url.path} is mounted without require_role")
    return principal


def describe(record: KeyRecord) -> dict[str, Any]:
    """A record as `esrag keys` lists it (no hash)."""
    return {"name": record.name, "role": record.role, "filters": record.filters,
            "index": record.index, "created": record.created}
