"""Parse files in a child process with a time limit and an address-space (memory) cap.

A hostile or broken file can make a parser loop for hours, eat all memory, or crash the
interpreter. The sandbox runs the loaders (not .jsonl, which streams line by line with a
per-line limit) in a long-lived child process capped with RLIMIT_AS; each file has
``parse_timeout`` seconds. A file over either budget, or one that kills the child, becomes
a LoadError with a one-line reason, and the child is replaced for the next file.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from esrag.errors import one_line
from ingest.documents import Document, LoadError
from ingest.guards import Limits
from ingest.loaders import load_file

_HEADER = struct.Struct("!Q")


def _send(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int, deadline: float | None = None) -> object:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return pickle.loads(_read_exact(fd, size, deadline))


class Sandbox:
    """A child process that loads files for this process; not thread-safe (one per pipeline)."""

    def __init__(self, max_file_bytes: int, limits: Limits, timeout: float, memory_mb: int):
        self.max_file_bytes = max_file_bytes
        self.limits = limits
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest.sandbox", str(self.memory_mb * 1024 * 1024)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        return self.proc

    def load(self, path: Path) -> list[Document | LoadError]:
        """The documents of one file (or LoadErrors), parsed within the budgets."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _send(proc.stdin.fileno(), (str(path), self.max_file_bytes, self.limits))
            result = _recv(proc.stdout.fileno(), time.monotonic() + self.timeout)
        except TimeoutError:
            self.close()
            return [LoadError(str(path), f"parsing took over {self.timeout:g} s (ESRAG_PARSE_TIMEOUT)")]
        except (EOFError, OSError):
            code = proc.wait()
            self.proc = None
            return [LoadError(str(path), f"the parser crashed (exit {code}); over the memory budget of "
                                         f"{self.memory_mb} MB? (ESRAG_PARSE_MEMORY_MB)")]
        assert isinstance(result, list)
        return [LoadError(*item) if isinstance(item, tuple) else item for item in result]

    def close(self) -> None:
        """Stop the child process."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_isolated(sandbox: Sandbox | None, path: Path, max_file_bytes: int,
                  limits: Limits) -> Iterator[Document | LoadError]:
    """``load_file`` through the sandbox, or in-process for .jsonl (or when there is none)."""
    if sandbox is None or path.suffix.lower() == ".jsonl":
        yield from load_file(path, max_file_bytes, limits)
    else:
        yield from sandbox.load(path)


def _serve(memory_bytes: int) -> None:
    import resource

    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    stdin, stdout = sys.stdin.buffer.fileno(), sys.stdout.buffer.fileno()
    sys.stdout = sys.stderr  # nothing a parser prints may corrupt the protocol
    while True:
        try:
            raw_path, max_file_bytes, limits = _recv(stdin)  # type: ignore[misc]
        except EOFError:
            return
        path = Path(raw_path)
        try:
            out: list[Document | LoadError] = list(load_file(path, max_file_bytes, limits))
        except MemoryError:
            out = [LoadError(raw_path, f"parsing needed more than the memory budget of "
                                       f"{memory_bytes // (1024 * 1024)} MB (ESRAG_PARSE_MEMORY_MB)")]
        except Exception as exc:  # a parser bug on odd input fails that file only
            out = [LoadError(raw_path, f"cannot load: {one_line(exc)}")]
        # LoadError does not pickle (two-argument constructor): send (source, message) tuples
        _send(stdout, [(o.source, o.message) if isinstance(o, LoadError) else o for o in out])


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
