"""Streaming: redact a source chunk by chunk and write it to a staged member file, hashing as it goes.

Memory stays bounded whatever the size of a log: a file is read in `CHUNK` pieces; the text up to the
last newline is redacted and written; the rest waits for the next piece. A line longer than `limit`
(a minified JSON dump, a base64 blob) is cut at a point no redaction match crosses (`safe_cut`), so
cutting can make redaction over-eager at the cut but never lets a secret or number through.
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

from waguard.evidence.manifest import FileEntry, safe_member_name
from waguard.evidence.redact import Counts, Redactor
from waguard.playbook.timeline import now_iso

CHUNK = 1 << 20
LINE_LIMIT = 1 << 20
REACH = 1024  # longest match of a non-secret rule (an email: 64 + 690 characters at most)
_WINDOW = 4096


def _spans(buf: str, redactor: Redactor) -> tuple[list[int], list[int]]:
    """Merged [start, end) intervals of every match a redaction pass would make in `buf`."""
    starts: list[int] = []
    ends: list[int] = []
    for s, e in redactor.spans(buf):
        if ends and s < ends[-1]:
            ends[-1] = max(ends[-1], e)
        else:
            starts.append(s)
            ends.append(e)
    return starts, ends


def safe_cut(buf: str, redactor: Redactor) -> tuple[int, bool]:
    """Where to split an over-long `buf` so that no redaction match straddles the cut. Pure.

    Returns `(cut, withhold)`. The cut stays at least the longest possible match before the end, so
    every match that starts before it is complete in `buf` and seen; a whitespace boundary is
    preferred. Only when back-to-back overlapping matches cover everything from the start of `buf`
    past the window (adversarial input) is `withhold` True: `buf[:cut]` is then one chain of
    sensitive matches and must be replaced whole, not redacted, so memory stays bounded.
    """
    hi = len(buf) - max(redactor.longest, REACH)
    lo = hi - _WINDOW
    if lo < 1:
        return len(buf), False
    starts, ends = _spans(buf, redactor)

    def free(p: int) -> bool:
        i = bisect.bisect_right(starts, p - 1) - 1  # the last interval starting before p
        return i < 0 or ends[i] <= p

    fallback = None
    for p in range(hi, lo, -1):
        if free(p):
            if buf[p - 1].isspace():
                return p, False
            fallback = fallback or p
    if fallback is not None:
        return fallback, False
    i = bisect.bisect_right(starts, hi) - 1  # the merged interval covering the whole window
    return (starts[i], False) if starts[i] > 0 else (ends[i], True)


def redact_stream(chunks: Iterable[bytes], redactor: Redactor, counts: Counts, *,
                  limit: int = LINE_LIMIT) -> Iterator[str]:
    """Redacted text of a byte stream, in pieces of whole lines (or safe cuts of over-long ones).

    Bytes that are not UTF-8 come out as `\\xNN` escapes rather than failing the collection.
    """
    limit = max(limit, 2 * (max(redactor.longest, REACH) + _WINDOW))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    buf = ""
    for chunk in chunks:
        buf += decoder.decode(chunk)
        newline = buf.rfind("\n")
        if newline >= 0:
            yield redactor.text(buf[: newline + 1], counts)
            buf = buf[newline + 1:]
        while len(buf) >= limit:
            cut, withhold = safe_cut(buf, redactor)
            if withhold:
                counts.secrets += 1
                yield f"[withheld: {cut} characters of back-to-back sensitive matches]"
            else:
                yield redactor.text(buf[:cut], counts)
            buf = buf[cut:]
    buf += decoder.decode(b"", final=True)
    if buf:
        yield redactor.text(buf, counts)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_chunks(path: Path, size: int = CHUNK) -> Iterator[bytes]:
    """A file's bytes in pieces; `.gz` files are decompressed on the fly (rotated logs)."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


class MemberWriter:
    """One staged member: text in, UTF-8 bytes to disk, SHA-256 and size as it goes."""

    def __init__(self, staging: Staging, name: str, source: str) -> None:
        if not safe_member_name(name):
            raise ValueError(f"unsafe member name {name!r}")
        self.staging, self.name, self.source = staging, name, source
        self.counts = Counts()
        self.note = ""
        self.collected_at = now_iso()
        self.path = staging.dir / "members" / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, text: str) -> None:
        data = text.encode("utf-8", errors="backslashreplace")
        self._hash.update(data)
        self._size += len(data)
        self._file.write(data)

    def __enter__(self) -> MemberWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._file.close()
        if kind is not None:
            self.path.unlink(missing_ok=True)  # a half-collected member is not evidence
            return
        self.staging.entries.append(FileEntry(
            name=self.name, sha256=self._hash.hexdigest(), size=self._size, source=self.source,
            collected_at=self.collected_at, redactions=self.counts.as_dict(), note=self.note))


class Staging:
    """A private working directory beside the bundles, removed when the bundle is written."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
        self.entries: list[FileEntry] = []

    def member(self, name: str, source: str) -> MemberWriter:
        return MemberWriter(self, name, source)

    def file(self, name: str) -> Path:
        return self.dir / "members" / name

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def scratch(self, name: str) -> Path:
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        return path
