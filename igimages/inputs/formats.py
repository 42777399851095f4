"""The posts formats by name, and telling which one an input is in."""

from __future__ import annotations

from collections.abc import Iterator

from igimages.inputs.apify import Apify
from igimages.inputs.base import Format
from igimages.inputs.feeds import Failures, Manifest
from igimages.inputs.fields import Fields
from igimages.inputs.gallerydl import GalleryDl
from igimages.inputs.graphql import GraphQL
from igimages.inputs.instagram_v1 import InstagramV1
from igimages.inputs.instaloader import Instaloader
from igimages.inputs.reader import Located, PostsFileError
from igimages.inputs.seed import Seed

#: In the order they are tried: the most specific marks first.
DETECTABLE: tuple[Format, ...] = (
    Instaloader(),
    Failures(),
    GalleryDl(),
    Manifest(),
    Seed(),
    Apify(),
    # Last: they search a value that is not a post for posts inside it.
    GraphQL(),
    InstagramV1(),
)
FORMATS: dict[str, Format] = {f.name: f for f in DETECTABLE}
NAMES = (
    "seed",
    "apify",
    "instaloader",
    "graphql",
    "instagram-v1",
    "gallery-dl",
    "failures",
    "manifest",
    Fields.name,
)
DETECT_WINDOW = 100  # values looked at before giving up


def detect(values: Iterator[Located]) -> tuple[Format, list[Located]]:
    """The format of the first value that shows one, and the values read to find it.

    A few values that fit no format (an error item at the top of an export)
    do not stop detection; an input with no value at all has no posts in any
    format.
    """
    read: list[Located] = []
    for located in values:
        read.append(located)
        for candidate in DETECTABLE:
            if candidate.looks_like(located.value):
                return candidate, read
        if len(read) == DETECT_WINDOW:
            break
    if not read:
        return FORMATS["seed"], read
    first = read[0]
    raise PostsFileError(
        f"cannot tell the posts format from the first {len(read)} values: give "
        f"-a format=NAME ({', '.join(NAMES)}) or -a id_field=PATH -a image_fields=PATH",
        first.name,
        first.line,
        first.column,
    )
