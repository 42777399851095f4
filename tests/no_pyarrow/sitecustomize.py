"""A Python without pyarrow, in the crawls the tests start.

Put on a crawl's ``PYTHONPATH``, this makes ``import pyarrow`` fail as it
does where pyarrow is not installed, whatever this machine has.
"""

from __future__ import annotations

import sys
from importlib.abc import MetaPathFinder


class _NoPyarrow(MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, _NoPyarrow())
