"""One posts input, whatever its format, as the spider and the survey take it.

``PostSource`` opens the input at once (so a missing file or an unknown shape
fails before any output is written), detects or applies the format, and
yields each post once: a post whose id was already seen is skipped and
counted, and every skipped value says where it was.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from igimages.inputs.base import Format
from igimages.inputs.fields import Fields
from igimages.inputs.folder import folder_values, json_files
from igimages.inputs.formats import FORMATS, NAMES, detect
from igimages.inputs.post import BadPost
from igimages.inputs.reader import STDIN, JsonValues, Located, PostsFileError, display_name
from igimages.inputs.seen import SeenSet
from igimages.items import Post


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What the user said about the input: its path, and its format if not detected.

    Built from the spider arguments ``posts``, ``format``, and the field
    mapping ``id_field``, ``image_fields`` and ``url_field``.
    """

    path: str
    format: Format | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> InputSpec:
        path = args.get("posts")
        if not path:
            raise PostsFileError("no posts file given: use -a posts=PATH")
        name = args.get("format") or None
        mapping = {key: args[key] for key in ("id_field", "image_fields") if args.get(key)}
        if mapping or args.get("url_field"):
            if name not in (None, Fields.name) or len(mapping) < 2:
                raise PostsFileError(
                    "field mapping needs -a id_field=PATH and -a image_fields=PATH[,PATH...], "
                    f"and no format other than {Fields.name}"
                )
            images = [field.strip() for field in mapping["image_fields"].split(",")]
            images = [field for field in images if field]
            return cls(path, Fields(mapping["id_field"], images, args.get("url_field")))
        if name == Fields.name:
            raise PostsFileError(f"-a format={Fields.name} needs -a id_field and -a image_fields")
        if name is not None and name not in FORMATS:
            raise PostsFileError(f"unknown format {name!r}: use one of {', '.join(NAMES)}")
        return cls(path, FORMATS[name] if name else None)

    @property
    def reads_stdin(self) -> bool:
        return self.path == STDIN


@dataclass(frozen=True, slots=True)
class Skipped:
    """A value that gives no post, and the stat it is counted under."""

    kind: str  # "bad" or "duplicate_input"
    at: Located
    reason: str

    def __str__(self) -> str:
        return f"{self.at.where}: skipped post #{self.at.index}: {self.reason}"


class PostSource:
    """The posts of one input, read once, in order."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.name = display_name(spec.path)
        values = self._values()
        if spec.format is None:
            self.format, read = detect(values)
            values = itertools.chain(read, values)
        else:
            self.format = spec.format
        self.detected = spec.format is None
        self._values_left = values

    def _values(self) -> Iterator[Located]:
        if self.spec.path != STDIN and os.path.isdir(self.spec.path):
            if next(json_files(self.spec.path), None) is None:
                raise PostsFileError("no .json files in this folder", self.name)
            return folder_values(self.spec.path)
        return iter(JsonValues(self.spec.path).open())

    @property
    def identity(self) -> str:
        """The input as one name, however it was given (what a ``JOBDIR`` was made for)."""
        where = self.name if self.spec.path == STDIN else os.path.abspath(self.spec.path)
        return f"{where} ({self.format.name})"

    def describe(self) -> str:
        how = "detected" if self.detected else "as asked"
        return f"{self.name}: {self.format.name} posts ({how})"

    def entries(self, max_images: int = 0) -> Iterator[Post | Skipped]:
        """Each post, or why a value was skipped; ``max_images`` (0: all) caps each post."""
        seen = SeenSet()
        for located, found in self.format.posts(self._values_left):
            if isinstance(found, BadPost):
                yield Skipped("bad", located, str(found))
            elif not seen.add(found.id):
                reason = f"post {found.id} is in the input twice (same id): processed once"
                yield Skipped("duplicate_input", located, reason)
            else:
                if max_images and len(found.image_urls) > max_images:
                    found.image_urls = found.image_urls[:max_images]
                    if found.positions is not None:
                        found.positions = found.positions[:max_images]
                yield found


@dataclass(slots=True)
class Survey:
    """What an input holds, read through once before the crawl."""

    posts: int = 0
    images: int = 0
    bad_posts: int = 0
    duplicates: int = 0


def survey(spec: InputSpec, max_images: int = 0) -> Survey:
    """Read the whole input, so a malformed one fails before anything is written."""
    found = Survey()
    for entry in PostSource(spec).entries(max_images):
        if isinstance(entry, Post):
            found.posts += 1
            found.images += len(entry.image_urls)
        elif entry.kind == "bad":
            found.bad_posts += 1
        else:
            found.duplicates += 1
    return found
