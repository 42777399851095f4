"""Read a posts file one post at a time, whatever its size.

A JSON array is parsed incrementally (``raw_decode`` over a sliding buffer),
so memory holds one post and a read-ahead chunk, never the whole file.
JSON Lines is read line by line. Every post comes with where it was found,
for messages a user can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from igimages.items import Post

CHUNK_CHARS = 1 << 16
MAX_POST_CHARS = 16 << 20  # one post bigger than this is not a post
_NON_SPACE = re.compile(r"\S")


class PostsFileError(Exception):
    """The file cannot be read as posts; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Located:
    """A value from the posts file and where it starts."""

    value: Any
    line: int
    column: int
    index: int  # 1-based number of the post in the file


class PostsReader:
    """Iterate the posts in ``path`` as ``Located`` values.

    ``open()`` checks the file is there, readable and of a known shape before
    anything else happens, so a wrong path fails before any output is written.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self.format = ""

    def open(self) -> PostsReader:
        try:
            self._file = open(self.path, encoding="utf-8-sig")  # noqa: SIM115
            head = self._file.read(CHUNK_CHARS)
        except (OSError, UnicodeDecodeError) as exc:
            raise PostsFileError(f"{self.path}: cannot read posts: {_reason(exc)}") from exc
        first = head.lstrip()[:1]
        if first == "[":
            self.format = "json"
        elif first == "{":
            self.format = "jsonl"
        elif not first:
            raise PostsFileError(f"{self.path}: the file is empty, no posts to read")
        else:
            line, column = _line_column(head, len(head) - len(head.lstrip()))
            raise PostsFileError(
                f"{self.path}:{line}:{column}: expected a JSON array of posts or "
                f"JSON Lines (one post object per line), found {first!r}"
            )
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __iter__(self) -> Iterator[Located]:
        if self._file is None:
            self.open()
        assert self._file is not None
        self._file.seek(0)
        try:
            if self.format == "json":
                yield from self._json_array(self._file)
            else:
                yield from self._json_lines(self._file)
        except UnicodeDecodeError as exc:
            raise PostsFileError(f"{self.path}: not UTF-8 text: {exc.reason}") from exc
        finally:
            self.close()

    def _json_lines(self, file: IO[str]) -> Iterator[Located]:
        index = 0
        for number, text in enumerate(file, start=1):
            if not text.strip():
                continue
            index += 1
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Located(Malformed(exc.msg), number, exc.colno, index)
                continue
            yield Located(value, number, 1 + len(text) - len(text.lstrip()), index)

    def _json_array(self, file: IO[str]) -> Iterator[Located]:
        decoder = json.JSONDecoder()
        buf, pos, eof = "", 0, False
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
            chunk = file.read(CHUNK_CHARS)
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
            found_line, column = locate(pos)
            return PostsFileError(f"{self.path}:{found_line}:{column}: {message}")

        next_char()  # the "[" that open() saw
        pos += 1
        if next_char() == "]":
            pos += 1
        else:
            index = 0
            while True:
                if not next_char():
                    raise fail("the posts array ends before its closing ']'")
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError as exc:
                        if eof or len(buf) - pos > MAX_POST_CHARS:
                            pos = exc.pos
                            raise fail(f"invalid JSON: {exc.msg}") from None
                        fill()
                        continue
                    if end < len(buf) or eof:
                        break
                    fill()  # a number may go on in the next chunk
                index += 1
                yield Located(value, *locate(pos), index)
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


class Malformed:
    """A JSON Lines line that is not JSON: a bad post, not a bad file."""

    def __init__(self, message: str) -> None:
        self.message = message


def _line_column(text: str, offset: int) -> tuple[int, int]:
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


class BadPost(Exception):
    """One post cannot be used; the rest of the file can."""


def to_post(value: Any, max_images: int = 0) -> Post:
    """Turn one value of a posts file in the seed's shape into a ``Post``.

    Image URLs keep their order; a URL listed twice in one post is kept once;
    ``max_images`` (0: no limit) caps how many are taken.
    """
    if isinstance(value, Malformed):
        raise BadPost(f"invalid JSON: {value.message}")
    if not isinstance(value, dict):
        raise BadPost(f"a post must be a JSON object, found {type(value).__name__}")
    post_id = value.get("id")
    if isinstance(post_id, bool) or not isinstance(post_id, str | int) or post_id == "":
        raise BadPost('the post has no "id" (a non-empty string or number)')
    media = value.get("media") or {}
    urls = media.get("images", []) if isinstance(media, dict) else None
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise BadPost(f'post {post_id}: "media.images" must be a list of URL strings')
    urls = list(dict.fromkeys(u.strip() for u in urls if u.strip()))
    if max_images:
        urls = urls[:max_images]
    post_url = value.get("url")
    return Post(str(post_id), post_url if isinstance(post_url, str) else None, urls)


@dataclass(slots=True)
class Survey:
    """What a posts file holds, read through once before the crawl."""

    posts: int = 0
    images: int = 0
    bad_posts: int = 0


def survey(path: str, max_images: int = 0) -> Survey:
    """Read the whole file, so a malformed one fails before anything is written."""
    found = Survey()
    for located in PostsReader(path):
        try:
            found.images += len(to_post(located.value, max_images).image_urls)
            found.posts += 1
        except BadPost:
            found.bad_posts += 1
    return found
