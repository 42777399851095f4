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
from itertools import accumulate
from typing import IO, Any

CHUNK_CHARS = 1 << 16
STDIN = "-"
_NON_SPACE = re.compile(r"\S")

# What one post may be. Past these a value is not a post but an attack, or a
# mistake: it is refused before it costs unbounded memory, time or recursion.
#: Characters of one post's JSON (a line, an array element, a document).
MAX_VALUE_CHARS = 16 << 20
#: Levels of nesting: real exports nest 10 to 20 deep (Instagram's GraphQL).
MAX_DEPTH = 100
#: Digits of an integer: Python's own bound on turning digits into an int,
#: enforced here whatever the interpreter is set to.
MAX_NUMBER_DIGITS = 4300
TOO_LARGE = f"larger than {MAX_VALUE_CHARS >> 20} MiB"
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
TOO_LONG_NUMBER = f"an integer longer than {MAX_NUMBER_DIGITS:,} digits"
#: The longest JSON token that may go on past the text read so far ("-Infinity",
#: a "\\uXXXX" escape pair): a value that ends or fails nearer the end of what
#: is read is decoded again once more is read.
_LONGEST_TOKEN = 12
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
        except _CorruptData as exc:  # in a first line longer than the head
            self.close()
            raise PostsFileError(exc.message, self.name, 1, 1) from exc
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
            return "lines" if _is_line(stripped.partition("\n")[0]) else "documents"
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
        index = number = 0
        try:
            for number, text in enumerate(self._lines(), start=1):
                if text is not None and not text.strip():
                    continue
                index += 1
                if text is None:
                    yield Located(Malformed(TOO_LARGE), self.name, number, 1, index)
                    continue
                column = 1 + len(text) - len(text.lstrip())
                try:
                    value = _DECODER.decode(text)
                except json.JSONDecodeError as exc:
                    bad = Malformed(f"invalid JSON: {exc.msg}")
                    yield Located(bad, self.name, number, exc.colno, index)
                    continue
                except (ValueError, RecursionError) as exc:
                    yield Located(Malformed(_past_limit(exc)), self.name, number, column, index)
                    continue
                if too_deep := _too_deep(text):
                    yield Located(Malformed(too_deep), self.name, number, column, index)
                    continue
                yield Located(value, self.name, number, column, index)
        except _CorruptData as exc:
            raise PostsFileError(exc.message, self.name, number + 1, 1) from exc

    def _json_values(self, in_array: bool) -> Iterator[Located]:
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

        def fill(size: int = CHUNK_CHARS) -> bool:
            nonlocal buf, pos, eof, mark, line_start
            if pos > CHUNK_CHARS:  # drop what has been parsed
                locate(pos)
                buf, mark, line_start, pos = buf[pos:], 0, line_start - pos, 0
            try:
                chunk = self._read(size)
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
            # An array's posts are numbered; a document is named by its place alone.
            post = f"post #{number}: " if in_array else ""
            while True:
                try:
                    value, end = _DECODER.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if eof or not _may_go_on(exc, len(buf)):
                        raise PostsFileError(
                            f"invalid JSON: {exc.msg}", self.name, *locate(exc.pos)
                        ) from None
                except (ValueError, RecursionError) as exc:
                    raise fail(post + _past_limit(exc)) from None
                else:
                    if eof or end < len(buf) - _LONGEST_TOKEN:  # what ends nearer may go on
                        if end - pos > MAX_VALUE_CHARS:
                            raise fail(post + TOO_LARGE)
                        if too_deep := _too_deep(buf, pos, end):
                            raise fail(post + too_deep)
                        return value, end
                pending = len(buf) - pos
                if pending > MAX_VALUE_CHARS + CHUNK_CHARS:
                    raise fail(post + TOO_LARGE)
                # As much again as is pending: a long value is decoded a few
                # times over, not once per chunk.
                fill(max(CHUNK_CHARS, min(pending, MAX_VALUE_CHARS - pending)))

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


class _PastLimit(ValueError):
    """A value past one of the limits above; ``str()`` says which."""


def _integer(digits: str) -> int:
    """A JSON integer, refused past ``MAX_NUMBER_DIGITS`` before it is converted."""
    if len(digits.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _PastLimit(TOO_LONG_NUMBER)
    return int(digits)


_DECODER = json.JSONDecoder(parse_int=_integer)
#: Each byte's step in nesting: an open bracket one level in, a close one out.
_NESTING_STEP = [0] * 256
_NESTING_STEP[ord("[")] = _NESTING_STEP[ord("{")] = 1
_NESTING_STEP[ord("]")] = _NESTING_STEP[ord("}")] = -1
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _is_line(text: str) -> bool:
    """Whether ``text``, a file's first line, is a JSON value of its own: a JSON
    Lines line (a bad post if past a limit), not the start of a document."""
    if len(text) > MAX_VALUE_CHARS:
        return True
    try:
        _DECODER.decode(text)
    except json.JSONDecodeError:
        return False
    except (ValueError, RecursionError):
        return True
    return True


def _may_go_on(exc: json.JSONDecodeError, read: int) -> bool:
    """Whether JSON that failed as ``exc`` may be whole once more than the
    ``read`` characters so far are read: a string still open, or a token cut."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= read - _LONGEST_TOKEN


def _past_limit(exc: ValueError | RecursionError) -> str:
    """Which limit a value that JSON cannot take is past."""
    return TOO_DEEP if isinstance(exc, RecursionError) else str(exc)


def _too_deep(text: str, start: int = 0, end: int | None = None) -> str:
    """``TOO_DEEP`` if the JSON ``text[start:end]``, well formed (it was decoded),
    nests deeper than ``MAX_DEPTH``.

    Only a value with more brackets than the limit allows levels is looked at
    (never a usual post): its brackets outside strings, counted up and down.
    """
    end = len(text) if end is None else end
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_DEPTH:
        return ""
    # Without escaped backslashes and quotes, every quote left opens or closes
    # a string: what lies between the strings is every second piece.
    unquoted = text[start:end].replace("\\\\", "").replace('\\"', "")
    outside = "".join(unquoted.split('"')[::2]).encode()  # JSON is ASCII outside strings
    steps = map(_NESTING_STEP.__getitem__, outside.translate(None, _NOT_BRACKETS))
    return TOO_DEEP if max(accumulate(steps), default=0) > MAX_DEPTH else ""


def _line_column(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text: {exc.reason}"
    return str(exc) or type(exc).__name__
