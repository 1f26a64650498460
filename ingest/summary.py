"""What one ingest counted: the summary, its progress events, and the counter names job stores add up."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The additive counts of an ingest: IngestSummary's fields, a job's Redis hash fields
# (workers/jobstore.py) and the keys of `esrag ingest --json` for a job (workers/cli.py).
COUNTERS = ("documents", "chunks", "indexed", "skipped_unchanged", "deleted", "embedded")


@dataclass
class IngestSummary:
    """Counts of one ingest; ``failed`` lists {"source", "error"} for each failure."""

    documents: int = 0
    chunks: int = 0
    indexed: int = 0
    skipped_unchanged: int = 0
    deleted: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    embedded: int = 0
    seconds: float = 0.0
    index: str = ""
    deleted_sources: list[str] | None = None  # with --sync: sources gone from disk, their chunks deleted

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary of `esrag ingest --json`."""
        out = asdict(self)
        if self.deleted_sources is None:
            del out["deleted_sources"]
        out["seconds"] = round(self.seconds, 3)
        return out

    def merge(self, other: IngestSummary) -> None:
        """Add ``other``'s counts, failures and time to this summary."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.extend(other.failed)
        self.seconds += other.seconds
        self.index = self.index or other.index


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot of an ingest in progress."""

    files_done: int
    files_total: int
    documents: int
    chunks: int
    indexed: int
    skipped_unchanged: int
    failed: int
    elapsed: float
