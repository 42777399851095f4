"""Read the JSON values of one file, one at a time, whatever its size.

The file may be gzip, xz or bzip2 compressed (told by its first bytes, so a
piped stream is recognised too) or ``-`` for standard input. Three layouts:
a JSON array, JSON Lines, or JSON documents one after another (an
instaloader ``.json`` is one indented object). An array or a run of
documents is parsed incrementally (``raw_decode`` over a sliding buffer), so
memory holds one value and a read-ahead chunk, never the whole file. Every
value comes with where it starts, for messages a user can act on.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

CHUNK_CHARS = 1 << 16
STDIN = "-"
_NON_SPACE = re.compile(r"\S")

# What one post may be. Past these a value is not a post but an attack, or a
# mistake: refused before it costs memory or a deep recursion.
#: Characters of one post's JSON (a line, an array element, a document).
MAX_VALUE_CHARS = 16 << 20
#: Levels of nesting: real exports nest 10 to 20 deep (Instagram's GraphQL).
MAX_DEPTH = 100
#: Digits of a number: Python's own bound on turning digits into an int.
MAX_NUMBER_DIGITS = 4300
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_DECODER = json.JSONDecoder()
_BRACKET = re.compile(r"[][{}]")
_DECOMPRESSORS: tuple[tuple[bytes, Callable[[IO[bytes]], IO[bytes]], str], ...] = (
    (b"\x1f\x8b", lambda file: gzip.GzipFile(fileobj=file), "gzip"),
    (b"\xfd7zXZ\x00", lzma.LZMAFile, "xz"),
    (b"BZh", bz2.BZ2File, "bzip2"),
)
_DECOMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


class PostsFileError(Exception):
    """The input cannot be read as posts; ``str()`` is one line for the user."""

    def __init__(self, message: str, name: str = "", line: int = 0, column: int = 0) -> None:
        where = f"{name}:{line}:{column}" if line else name
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.name = name
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class Located:
    """A value from the input and where it starts."""

    value: Any
    name: str  # the file, as the user named it
    line: int
    column: int
    index: int  # 1-based number of the value in the input

    @property
    def where(self) -> str:
        return f"{self.name}:{self.line}:{self.column}"


class Malformed:
    """A value that is not JSON, or past a limit, where the rest of the input can
    still be read.

    A bad JSON Lines line, or a bad file in a folder: a bad post, not a bad input.
    """

    def __init__(self, message: str) -> None:
        self.message = message


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


class JsonValues:
    """Iterate the JSON values in ``path`` as ``Located`` values.

    ``open()`` checks the file is there, readable and of a known layout before
    anything else happens, so a wrong path fails before any output is written.
    Standard input can be iterated once; a file as often as it is opened.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = display_name(path)
        self.compression = ""
        self.layout = ""  # "array", "lines" or "documents"
        self._file: IO[str] | None = None
        self._raw: IO[bytes] | None = None
        self._head = ""

    def open(self) -> JsonValues:
        try:
            self._file = self._open_text()
            self._head = self._file.read(CHUNK_CHARS)
            self.layout = self._layout()
        except (UnicodeDecodeError, *_DECOMPRESSION_ERRORS) as exc:
            self.close()
            raise PostsFileError(f"cannot read posts: {_reason(exc)}", self.name) from exc
        except PostsFileError:
            self.close()
            raise
        return self

    def _layout(self) -> str:
        stripped = self._head.lstrip()
        first = stripped[:1]
        if first == "[":
            return "array"
        if first == "{":
            if "\n" not in stripped:  # the first line goes on past the head: read all of it
                rest = self._read_line(MAX_VALUE_CHARS + 1 - len(stripped))
                self._head += rest
                stripped += rest
            line = stripped.partition("\n")[0]
            if len(line) > MAX_VALUE_CHARS:
                return "lines"  # a first line too long to be a document's: skipped as a bad post
            return "lines" if _is_json(line) else "documents"
        if not first:
            raise PostsFileError("the file is empty, no posts to read", self.name)
        line, column = _line_column(self._head, len(self._head) - len(stripped))
        raise PostsFileError(
            "expected a JSON array of posts or JSON Lines (one post object per line), "
            f"found {first!r}",
            self.name,
            line,
            column,
        )

    def _open_text(self) -> IO[str]:
        if self.path == STDIN:
            binary: IO[bytes] = sys.stdin.buffer
        else:
            binary = self._raw = open(self.path, "rb")  # noqa: SIM115
        head = binary.read(6)
        if binary.seekable():
            binary.seek(0)
        else:  # a pipe cannot seek back: put the bytes read back in front
            binary = io.BufferedReader(_Replay(head, binary))
        for magic, opener, name in _DECOMPRESSORS:
            if head.startswith(magic):
                self.compression = name
                binary = opener(binary)
                break
        return io.TextIOWrapper(binary, encoding="utf-8-sig")

    def close(self) -> None:
        # A decompressor does not close the file it reads, so both are closed.
        for stream in (self._file, self._raw):
            if stream is not None:
                stream.close()
        self._file = self._raw = None

    def __iter__(self) -> Iterator[Located]:
        if self._file is None:
            self.open()
        try:
            if self.layout == "lines":
                yield from self._json_lines()
            else:
                yield from self._json_values(in_array=self.layout == "array")
        except UnicodeDecodeError as exc:
            raise PostsFileError(f"not UTF-8 text: {exc.reason}", self.name) from exc
        finally:
            self.close()

    def _read(self, size: int) -> str:
        """Up to ``size`` characters; "" at the end."""
        assert self._file is not None
        try:
            return self._file.read(size)
        except _DECOMPRESSION_ERRORS as exc:
            raise self._corrupt(exc) from exc

    def _read_line(self, limit: int) -> str:
        """The rest of a line, at most ``limit`` characters of it; "" at the end."""
        assert self._file is not None
        try:
            return self._file.readline(max(limit, 1))
        except _DECOMPRESSION_ERRORS as exc:
            raise self._corrupt(exc) from exc

    def _corrupt(self, exc: BaseException) -> _CorruptData:
        kind = self.compression or "file"
        return _CorruptData(f"the {kind} data is corrupt or cut short ({exc})")

    def _lines(self) -> Iterator[str | None]:
        """The lines of the file, those already read into the head first; None for
        a line longer than ``MAX_VALUE_CHARS``, which is read through, never held."""
        *whole, partial = self._head.split("\n")
        for text in whole:
            yield text + "\n" if len(text) <= MAX_VALUE_CHARS else None
        assert self._file is not None
        readline, text = self._file.readline, partial
        try:
            while True:  # the line the head ends inside, then the others
                text += readline(max(1, MAX_VALUE_CHARS + 1 - len(text)))
                if len(text) <= MAX_VALUE_CHARS:  # every usual line, its end included
                    if not text:
                        return
                    yield text
                elif len(text.rstrip("\r\n")) <= MAX_VALUE_CHARS:
                    yield text
                else:
                    while not text.endswith("\n") and (text := readline(CHUNK_CHARS)):
                        pass
                    yield None
                text = ""
        except _DECOMPRESSION_ERRORS as exc:
            raise self._corrupt(exc) from exc

    def _json_lines(self) -> Iterator[Located]:
        decode = _DECODER.decode
        index = number = 0
        try:
            for number, text in enumerate(self._lines(), start=1):
                if text is not None and not text.strip():
                    continue
                index += 1
                if text is None:
                    bad = Malformed(f"a line longer than {MAX_VALUE_CHARS >> 20} MiB")
                    yield Located(bad, self.name, number, 1, index)
                    continue
                column = 1 + len(text) - len(text.lstrip())
                try:
                    value = decode(text)
                except json.JSONDecodeError as exc:
                    bad = Malformed(f"invalid JSON: {exc.msg}")
                    yield Located(bad, self.name, number, exc.colno, index)
                    continue
                except (ValueError, RecursionError) as exc:  # past a limit, as below
                    yield Located(Malformed(_past_limit(exc)), self.name, number, column, index)
                    continue
                if text.count("[") + text.count("{") > MAX_DEPTH and (
                    too_deep := _depth_beyond_limit(text)
                ):
                    yield Located(Malformed(too_deep), self.name, number, column, index)
                    continue
                yield Located(value, self.name, number, column, index)
        except _CorruptData as exc:
            raise PostsFileError(exc.message, self.name, number + 1, 1) from exc

    def _json_values(self, in_array: bool) -> Iterator[Located]:
        decoder = json.JSONDecoder()
        buf, pos, eof = self._head, 0, False
        # Line bookkeeping advances with the reading, never rescans: ``line``
        # is the line number at buffer offset ``mark``, whose line starts at
        # offset ``line_start`` (negative once the buffer has slid past it).
        mark, line, line_start = 0, 1, 0

        def locate(offset: int) -> tuple[int, int]:
            nonlocal mark, line, line_start
            newlines = buf.count("\n", mark, offset)
            if newlines:
                line += newlines
                line_start = buf.rfind("\n", mark, offset) + 1
            mark = offset
            return line, offset - line_start + 1

        def fill() -> bool:
            nonlocal buf, pos, eof, mark, line_start
            if pos > CHUNK_CHARS:  # drop what has been parsed
                locate(pos)
                buf, mark, line_start, pos = buf[pos:], 0, line_start - pos, 0
            try:
                chunk = self._read(CHUNK_CHARS)
            except _CorruptData as exc:
                raise PostsFileError(exc.message, self.name, *locate(len(buf))) from exc
            eof = not chunk
            buf += chunk
            return not eof

        def next_char() -> str:
            nonlocal pos
            while True:
                found = _NON_SPACE.search(buf, pos)
                if found:
                    pos = found.start()
                    return buf[pos]
                pos = len(buf)
                if not fill():
                    return ""

        def fail(message: str) -> PostsFileError:
            return PostsFileError(message, self.name, *locate(pos))

        def decode(number: int) -> tuple[Any, int]:
            while True:
                if len(buf) - pos > MAX_VALUE_CHARS + CHUNK_CHARS:
                    raise fail(f"post #{number} is larger than {MAX_VALUE_CHARS >> 20} MiB")
                try:
                    value, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if eof:
                        raise PostsFileError(
                            f"invalid JSON: {exc.msg}", self.name, *locate(exc.pos)
                        ) from None
                    fill()
                    continue
                except (ValueError, RecursionError) as exc:
                    raise fail(f"post #{number}: {_past_limit(exc)}") from None
                if end < len(buf) or eof:
                    if end - pos > MAX_VALUE_CHARS:
                        raise fail(f"post #{number} is larger than {MAX_VALUE_CHARS >> 20} MiB")
                    if too_deep := _depth_beyond_limit(buf, pos, end):
                        raise fail(f"post #{number}: {too_deep}")
                    return value, end
                fill()  # a number may go on in the next chunk

        index = 0
        if not in_array:
            while next_char():
                value, end = decode(index + 1)
                index += 1
                yield Located(value, self.name, *locate(pos), index)
                pos = end
            return
        next_char()  # the "[" that open() saw
        pos += 1
        if next_char() == "]":
            pos += 1
        else:
            while True:
                if not next_char():
                    raise fail("the posts array ends before its closing ']'")
                value, end = decode(index + 1)
                index += 1
                yield Located(value, self.name, *locate(pos), index)
                pos = end
                char = next_char()
                if char == ",":
                    pos += 1
                elif char == "]":
                    pos += 1
                    break
                elif char:
                    raise fail(f"expected ',' or ']' after post #{index}, found {char!r}")
                else:
                    raise fail("the posts array ends before its closing ']'")
        if next_char():
            raise fail("unexpected data after the posts array")


class _Replay(io.RawIOBase):
    """``rest`` with ``head``, already read from it, put back in front."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            data, self._head = self._head[: len(buffer)], self._head[len(buffer) :]
        else:
            data = self._rest.read1(len(buffer))  # type: ignore[attr-defined]
        buffer[: len(data)] = data
        return len(data)


class _CorruptData(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _past_limit(exc: BaseException) -> str:
    """Which limit a value that JSON cannot take is past."""
    if isinstance(exc, RecursionError):
        return f"nested deeper than {MAX_DEPTH} levels"
    if "digits" in str(exc):  # "Exceeds the limit (4300 digits) for integer string conversion"
        return f"a number longer than {MAX_NUMBER_DIGITS:,} digits"
    return f"invalid JSON: {exc}"


def _depth_beyond_limit(text: str, start: int = 0, end: int | None = None) -> str:
    """Why the JSON in ``text[start:end]`` nests too deep; "" if it does not.

    Nesting is counted on the text, strings left out, only when the value has
    more brackets than the limit allows levels: never for a usual post.
    """
    end = len(text) if end is None else end
    if text.count("{", start, end) + text.count("[", start, end) <= MAX_DEPTH:
        return ""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text[start:end])):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return f"nested deeper than {MAX_DEPTH} levels" if deepest > MAX_DEPTH else ""


def _line_column(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc.reason}"
    return str(exc) or type(exc).__name__
