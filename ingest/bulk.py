"""Byte-sized bulk requests with retries and backoff, reporting each action's outcome."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError

from esrag.errors import ServiceUnavailable, es_reason

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class WriteBlocked(ServiceUnavailable):
    """The index refuses writes (a cluster block such as the flood-stage disk watermark)."""


def check_block(index: str, error: Any) -> None:
    """Raise WriteBlocked, with what the operator must do, when ``error`` is a cluster block."""
    if not isinstance(error, dict) or error.get("type") != "cluster_block_exception":
        return
    reason = str(error.get("reason", ""))
    if "read-only-allow-delete" in reason or "read_only_allow_delete" in reason or "flood" in reason:
        raise WriteBlocked(
            f"Elasticsearch made index {index} read-only (flood-stage disk watermark): free disk space on "
            "its data nodes, then reset the block with PUT _all/_settings "
            '{"index.blocks.read_only_allow_delete": null}; nothing was lost, run again to continue'
        )
    raise WriteBlocked(f"Elasticsearch refuses writes to index {index}: {es_reason(error)}; remove the block "
                       "(PUT <index>/_settings), then run again")


@dataclass(frozen=True)
class Outcome:
    """What happened to one bulk action: ``ok``, its HTTP status, and a one-line error."""

    key: Any
    op: str
    ok: bool
    status: int
    error: str | None = None


class BulkWriter:
    """Buffers serialized actions and sends them in requests of at most ``max_bytes``.

    Requests that fail as a whole (connection errors, 429, 5xx) and single items that come
    back 429 or 5xx are retried with exponential backoff, ``max_retries`` times
    (ESRAG_ES_MAX_RETRIES); other item errors are final.
    """

    def __init__(
        self, client: Elasticsearch, max_bytes: int, *, max_retries: int,
        initial_backoff: float = 0.5, max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client.options(max_retries=0)
        self.max_bytes = max_bytes
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self._lines: list[tuple[bytes, str, Any]] = []
        self._size = 0
        self.requests = 0

    def add(self, op: str, index: str, doc_id: str, source: dict[str, Any] | None, key: Any) -> list[Outcome]:
        """Queue one ``index`` or ``delete`` action; return outcomes of any request this sent."""
        line = json.dumps({op: {"_index": index, "_id": doc_id}}, separators=(",", ":")) + "\n"
        if source is not None:
            line += json.dumps(source, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8", "surrogatepass")
        done: list[Outcome] = []
        if self._lines and self._size + len(data) > self.max_bytes:
            done = self.flush()
        self._lines.append((data, op, key))
        self._size += len(data)
        return done

    def flush(self) -> list[Outcome]:
        """Send what is buffered; return one outcome per action."""
        if not self._lines:
            return []
        batch, self._lines, self._size = self._lines, [], 0
        return self._send(batch)

    @staticmethod
    def _index(batch: list[tuple[bytes, str, Any]], pending: list[int]) -> str:
        head = json.loads(batch[pending[0]][0].split(b"\n", 1)[0])
        return str(next(iter(head.values())).get("_index", ""))

    def _backoff(self, attempt: int) -> None:
        self.sleep(min(self.max_backoff, self.initial_backoff * (2 ** attempt)))

    def _send(self, batch: list[tuple[bytes, str, Any]]) -> list[Outcome]:
        results: dict[int, Outcome] = {}
        pending = list(range(len(batch)))
        attempt = 0
        while pending:
            body = b"".join(batch[i][0] for i in pending)
            try:
                self.requests += 1
                resp = self.client.bulk(operations=body)
            except ApiError as exc:
                status = int(getattr(exc, "status_code", 0) or getattr(exc.meta, "status", 0) or 0)
                body = exc.body if isinstance(exc.body, dict) else {}
                check_block(self._index(batch, pending), body.get("error"))
                if status in RETRY_STATUS and attempt < self.max_retries:
                    self._backoff(attempt)
                    attempt += 1
                    continue
                if status in RETRY_STATUS:  # the cluster, not the documents: nothing is failed
                    raise ServiceUnavailable(
                        f"Elasticsearch answered HTTP {status} to {attempt + 1} bulk requests in a row; "
                        "nothing was lost, run again to continue"
                    ) from None
                for i in pending:
                    results[i] = Outcome(batch[i][2], batch[i][1], False, status, f"bulk request failed: "
                                         f"HTTP {status} {es_reason(exc.body if exc.body else exc)}")
                break
            except TransportError as exc:  # connection refused/reset, timeouts
                if attempt < self.max_retries:
                    self._backoff(attempt)
                    attempt += 1
                    continue
                raise ServiceUnavailable(
                    f"Elasticsearch unreachable ({type(exc).__name__}) after {attempt + 1} bulk attempts; "
                    "nothing was lost, run again to continue"
                ) from None
            retry = []
            for i, item in zip(pending, resp["items"], strict=True):
                (op, info), = item.items()
                status = int(info.get("status", 0))
                ok = 200 <= status < 300 or (op == "delete" and status == 404)
                if not ok:
                    check_block(str(info.get("_index", "")), info.get("error"))
                if ok:
                    results[i] = Outcome(batch[i][2], op, True, status)
                elif status in RETRY_STATUS and attempt < self.max_retries:
                    retry.append(i)
                else:
                    results[i] = Outcome(batch[i][2], op, False, status, es_reason(info.get("error")))
            pending = retry
            if pending:
                self._backoff(attempt)
                attempt += 1
        return [results[i] for i in range(len(batch))]
