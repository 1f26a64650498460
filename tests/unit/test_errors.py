"""The one home of one-line error text (esrag/errors.py)."""

from esrag.errors import es_reason, one_line, squash


def test_squash_joins_lines_and_cuts() -> None:
    assert squash("a\n  b\tc\r\n", 300) == "a b c"
    assert squash("x" * 500) == "x" * 300
    assert squash("abcdef", 3) == "abc"


def test_one_line_names_the_type_and_keeps_every_line() -> None:
    assert one_line(ValueError("first\nsecond")) == "ValueError: first second"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(OSError("  ")) == "OSError"
    assert one_line(RuntimeError("y" * 400)) == "RuntimeError: " + "y" * 200
    assert one_line(RuntimeError("y" * 400), 10, typed=False) == "y" * 10
    assert one_line(RuntimeError(""), typed=False) == "RuntimeError"


def test_es_reason_reads_an_error_object_with_its_cause() -> None:
    error = {"type": "mapper_parsing_exception", "reason": "failed to parse\n field [x]",
             "caused_by": {"type": "illegal_argument_exception", "reason": "bad value"}}
    assert es_reason(error) == "mapper_parsing_exception: failed to parse field [x] (bad value)"
    assert es_reason({"reason": "r"}) == "error: r"
    assert es_reason("plain\ntext") == "plain text"
    assert es_reason({"type": "t", "reason": "z" * 400}) == ("t: " + "z" * 400)[:300]
