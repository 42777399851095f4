"""Keep credentials out of the log.

Scrapy logs every overridden setting when a crawl starts, so
``-s AWS_SECRET_ACCESS_KEY=...`` or ``-s REDIS_URL=redis://:PASSWORD@host``
would end up in the log and in whatever collects it. This filter replaces
such values before the line is written.
"""

from __future__ import annotations

import logging
import re

_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE|_KEY_ID$|API_KEY")
HIDDEN = "(hidden)"
_URL_PASSWORD = re.compile(r"(://[^/@:'\"\s]*:)[^/@'\"\s]*@")


class HideCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and isinstance(record.args.get("settings"), str):
            record.args = {**record.args, "settings": _hide(record.args["settings"])}
        return True


def _hide(text: str) -> str:
    """Mask ``'NAME': value`` pairs of a pretty-printed settings dict, and the
    password of any URL in it (``REDIS_URL=redis://:PASSWORD@host``)."""
    text = re.sub(
        r"'([A-Z0-9_]+)': ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")",
        lambda m: f"'{m[1]}': '{HIDDEN}'" if _SECRET_NAME.search(m[1]) else m[0],
        text,
    )
    return hide_url_passwords(text)


def hide_url_passwords(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\1{HIDDEN}@", text)


def install(logger_name: str = "scrapy.crawler") -> None:
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, HideCredentials) for f in logger.filters):
        logger.addFilter(HideCredentials())
