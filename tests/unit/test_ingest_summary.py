"""The ingest counters have one home (ingest/summary.py) that the job store and `esrag ingest` share."""

from dataclasses import fields

from ingest.summary import COUNTERS, IngestSummary


def test_every_counter_is_an_int_field_of_the_summary_and_merge_adds_them() -> None:
    ints = [f.name for f in fields(IngestSummary) if f.type in ("int", int)]
    assert list(COUNTERS) == ints
    a = IngestSummary(**{c: i + 1 for i, c in enumerate(COUNTERS)}, failed=[{"source": "a", "error": "e"}])
    b = IngestSummary(**{c: 10 * (i + 1) for i, c in enumerate(COUNTERS)}, index="idx", seconds=1.5)
    a.merge(b)
    assert [getattr(a, c) for c in COUNTERS] == [11, 22, 33, 44, 55, 66]
    assert a.failed == [{"source": "a", "error": "e"}] and a.index == "idx" and a.seconds == 1.5
