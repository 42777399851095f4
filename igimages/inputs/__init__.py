"""Posts inputs: every format users export posts in, read one post at a time.

``PostSource(InputSpec.from_args(spider_args))`` is all the rest of igimages
needs: it yields ``Post`` items, or ``Skipped`` for values that give none;
``InputPosts`` hands them to the spider (``IGIMAGES_POSTS``).
"""

from igimages.inputs.reader import PostsFileError
from igimages.inputs.source import InputSpec, PostSource, Skipped, Survey, survey

__all__ = ["InputSpec", "PostSource", "PostsFileError", "Skipped", "Survey", "survey"]
