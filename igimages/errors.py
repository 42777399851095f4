"""What stops a crawl for a reason the user reads in one line, not as a traceback."""


class OneLineError(Exception):
    """``str()`` is the whole story, for the user: a store that cannot be written,
    a job's Redis that cannot be reached. Before the crawl starts it is exit status 1."""
