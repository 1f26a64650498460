"""Coverage-guided fuzzing of every loader with atheris (libFuzzer), run as a script:

    (ulimit -v 3145728; python tests/fuzz/atheris_loaders.py SEED_DIR -max_total_time=30 -rss_limit_mb=0)

(an address-space cap rather than -rss_limit_mb, which counts a parent's peak RSS when the
harness is started from a large process: Linux keeps ru_maxrss across exec).

The first input byte picks the format (.txt .md .html .pdf .docx .jsonl), the rest is the
file. The property is the one of tests/unit/test_loader_fuzz.py: a loader yields Documents
or LoadErrors with a one-line reason and never raises. Any other exception is a crash:
libFuzzer writes the input to ``crash-*`` and the script exits non-zero. The parsers
(pypdf, python-docx/lxml, BeautifulSoup, markdown-it) are instrumented too, so coverage
guides the mutations into their code.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["ingest", "pypdf", "docx", "bs4", "markdown_it"]):
    from ingest.documents import Document, LoadError
    from ingest.loaders import load_file

SUFFIXES = [".txt", ".md", ".html", ".pdf", ".docx", ".jsonl"]
MAX_BYTES = 1024 * 1024
WORK = Path(tempfile.mkdtemp(prefix="atheris-work-", dir="."))  # under the caller's cwd


def test_one_input(data: bytes) -> None:
    """Load ``data`` as the file type its first byte picks; raise on a broken property."""
    if not data:
        return
    suffix = SUFFIXES[data[0] % len(SUFFIXES)]
    path = WORK / f"input{suffix}"
    path.write_bytes(data[1:])
    items = list(load_file(path, MAX_BYTES))
    if not items and suffix != ".jsonl":
        raise AssertionError(f"{suffix}: no document and no error")
    for item in items:
        if isinstance(item, LoadError):
            if not item.message or "\n" in item.message or len(item.message) > 400:
                raise AssertionError(f"{suffix}: bad error message {item.message!r}")
        elif not (isinstance(item, Document) and item.text.strip()):
            raise AssertionError(f"{suffix}: empty document")


def write_seeds(folder: Path) -> None:
    """One small real file per format, prefixed with its format byte."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import docx

    from tests.ingest_samples import write_pdf

    folder.mkdir(parents=True, exist_ok=True)
    d = docx.Document()
    d.add_heading("Seed", 1)
    d.add_paragraph("A paragraph of the seed document.")
    d.save(WORK / "s.docx")
    write_pdf(WORK / "s.pdf", [["Seed page one text."], ["Page two."]], title="Seed")
    files = {
        ".txt": b"plain text\n",
        ".md": b"# Title\n\nSome *markdown* text.\n\n```\ncode\n```\n",
        ".html": b"<html><head><title>T</title></head><body><main><h1>H</h1><p>Text.</p></main></body>",
        ".pdf": (WORK / "s.pdf").read_bytes(),
        ".docx": (WORK / "s.docx").read_bytes(),
        ".jsonl": b'{"id": "a", "text": "x"}\n{"id": 2, "text": "y", "k": [1]}\n',
    }
    for suffix, raw in files.items():
        (folder / f"seed{suffix}").write_bytes(bytes([SUFFIXES.index(suffix)]) + raw)


if __name__ == "__main__":
    if os.environ.get("ESRAG_FUZZ_WRITE_SEEDS"):
        write_seeds(Path(os.environ["ESRAG_FUZZ_WRITE_SEEDS"]))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
