"""The document-write protocol (ingest/docwrite.py) over a recording stand-in for the bulk API."""

from __future__ import annotations

import json

from ingest.chunking import Chunk
from ingest.documents import Document
from ingest.docwrite import DocumentWrite, DocumentWriter


class RecordingClient:
    """Answers bulk requests item by item; ids in ``fail`` come back 400."""

    def __init__(self, fail: set[str] = frozenset()):
        self.requests: list[list[tuple[str, str]]] = []
        self.fail = fail

    def options(self, **_: object) -> RecordingClient:
        return self

    def bulk(self, operations: bytes) -> dict:
        lines = [json.loads(x) for x in operations.decode().splitlines() if x]
        actions = []
        items = []
        i = 0
        while i < len(lines):
            (op, meta), = lines[i].items()
            actions.append((op, meta["_id"]))
            status = 400 if meta["_id"] in self.fail else (200 if op == "delete" else 201)
            item = {"_index": meta["_index"], "_id": meta["_id"], "status": status}
            if status == 400:
                item["error"] = {"type": "mapper_parsing_exception", "reason": "bad field"}
            items.append({op: item})
            i += 1 if op == "delete" else 2
        self.requests.append(actions)
        return {"items": items}


def _work(name: str, n: int, stale: list[str]) -> DocumentWrite:
    doc = Document(doc_id=name, source=f"/{name}", title="", content_type="text/plain", text="x" * n)
    chunks = [Chunk(i, i, i + 1, "x", (), "", 1) for i in range(n)]
    return DocumentWrite(doc, name, "h", chunks, [f"{name}:{i}" for i in range(n)], ["c"] * n, stale)


def _writer(client: RecordingClient, failed: list[tuple[str, str]], counts: dict[str, int]) -> DocumentWriter:
    def add(key: str):
        return lambda n: counts.__setitem__(key, counts.get(key, 0) + n)

    return DocumentWriter(client, "idx", 1024, 6, on_indexed=add("indexed"), on_deleted=add("deleted"),  # type: ignore[arg-type]
                          on_failed=lambda label, err: failed.append((label, err)))


def test_marker_goes_in_a_later_request_than_every_other_action_of_its_document():
    client, failed, counts = RecordingClient(), [], {}
    writer = _writer(client, failed, counts)
    a, b = _work("a", 3, ["a:old1", "a:old2"]), _work("b", 1, [])
    for w in (a, b):
        for pos in range(len(w.chunks)):
            writer.chunk(w, pos, {"n": pos})
    writer.flush()
    flat = [(r, act) for r, req in enumerate(client.requests) for act in req]
    where = {act: r for r, act in flat}
    for w in (a, b):
        others = [r for r, (op, i) in flat if i.startswith(w.doc.doc_id) and i != w.ids[0]]
        assert where[("index", w.ids[0])] > max(others, default=-1)
    assert [act for _, act in flat if act[1].startswith("a")] == [
        ("delete", "a:old1"), ("delete", "a:old2"), ("index", "a:1"), ("index", "a:2"), ("index", "a:0")]
    assert (a.state, b.state, failed, counts) == ("done", "done", [], {"indexed": 4, "deleted": 2})


def test_a_failed_action_means_no_marker_and_one_report():
    client, failed, counts = RecordingClient(fail={"a:2"}), [], {}
    writer = _writer(client, failed, counts)
    a = _work("a", 3, ["a:old"])
    for pos in range(3):
        writer.chunk(a, pos, {"n": pos})
    writer.flush()
    sent = [act for req in client.requests for act in req]
    assert ("index", "a:0") not in sent
    assert a.state == "failed"
    assert failed == [("a", "indexing failed: mapper_parsing_exception: bad field")]
