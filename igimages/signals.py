"""Signals of igimages' own, sent through the crawler's signal manager."""

#: Sent (with ``reason``) when the crawl must stop sending requests at once,
#: e.g. the image folder cannot be written: waiting downloads are dropped.
stop_downloads = object()

#: Sent (with ``slot`` and ``seconds``) when a host answered 429 with a
#: ``Retry-After`` and the gate holds its requests for that long.
host_paused = object()
