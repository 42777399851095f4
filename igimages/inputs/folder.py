"""The JSON files of a folder (instaloader, gallery-dl), read as one input.

Files are taken in name order, folder by folder, so a run is repeatable.
Only ``.json`` files count, compressed ones too; hidden names are skipped
(a store's ``.igimages`` among them). A file that cannot be read is one bad
post, not the end of the run: the other files are still good.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

from igimages.inputs.reader import JsonValues, Located, Malformed, PostsFileError

SUFFIXES = (".json", ".json.xz", ".json.gz", ".json.bz2")


def json_files(root: str) -> Iterator[str]:
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            if name.endswith(SUFFIXES) and not name.startswith("."):
                yield os.path.join(folder, name)


def folder_values(root: str) -> Iterator[Located]:
    index = 0
    for path in json_files(root):
        try:
            for located in JsonValues(path):
                index += 1
                yield replace(located, index=index)
        except PostsFileError as exc:
            index += 1
            yield Located(Malformed(exc.message), path, exc.line or 1, exc.column or 1, index)
