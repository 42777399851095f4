"""Keep credentials out of everything the process prints.

Every log record, of any logger at any level and whatever handler writes it
(the console, ``LOG_FILE``), with its traceback, and every message the
commands print pass through :func:`redact`. It hides two kinds of secret
with ``(hidden)``:

* what is known: the values of settings and environment variables whose
  names say they are secret (``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
  ``AZURE_STORAGE_ACCOUNT_KEY``, ``*_PASSWORD``, ``*_TOKEN``, ``REDIS_PARAMS``'
  password...) and the password of every URL in them (``REDIS_URL``,
  ``http_proxy``), in the forms a log prints them in: as written,
  percent-encoded or decoded, escaped in a repr or in JSON;
* what is not known in advance: the password of any
  ``scheme://user:password@host``, whatever characters it holds, and the
  values of credentials that HTTP clients dump at DEBUG (botocore's request
  and canonical request: ``Authorization``, ``X-Amz-Security-Token``, its
  signature; ``Cookie``, ``Proxy-Authorization``, ``Bearer`` tokens,
  ``X-Amz-Signature=`` and ``X-Goog-Signature=`` query parameters).

A record is redacted as it is made, by the record factory, which sees every
record of every logger: a filter on a logger does not see its children's
records, and Scrapy replaces its root handler, and a filter on it, when a
crawler is made. Once the crawl runs, records below ``LOG_LEVEL`` are not
made at all (``RuntimeTuning``), so the cost is one more formatting of each
record that is written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote

HIDDEN = "(hidden)"
#: Known values shorter than this are left to the patterns: hidden wherever
#: they appear, they would garble the log (an access key "test"), and they
#: would be no secret anyway.
SHORTEST_SECRET = 6

#: What the name of a secret holds, in lower case.
_SECRET_WORDS = (
    *("secret", "password", "passwd", "token", "credential", "private", "authorization"),
    *("cookie", "signature", "apikey", "api_key", "api-key", "keyid", "key_id", "key-id"),
    *("encryption_key", "encryption-key", "account_key", "account-key"),
)
_SECRET_NAME = re.compile("|".join(_SECRET_WORDS), re.IGNORECASE)
_QUOTED = r"""b?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""  # a str or bytes literal

# scheme://user:password@host: as a URL is parsed, the password runs from the
# first ":" to the last "@" before the end of the address ("/", "?", "#"), so
# it may hold any other character, spaces and quotes too.
_URL_PASSWORD = re.compile(
    r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/?#:@\r\n]*:)(?P<secret>[^/?#\r\n]*)@", re.IGNORECASE
)
# Names and their values, hidden when the name is a secret's (_hide_named).
_NAMED = (
    # 'AWS_SESSION_TOKEN': '...' in a repr (pprint splits a long value into
    # '...' '...', or ('...' '...')), 'X-Amz-Security-Token': b'...', and
    # "password": "..." in JSON
    re.compile(
        rf"(?P<keep>(?P<quote>['\"])(?P<name>[\w-]+)(?P=quote)\s*:\s*)"
        rf"(?:\(\s*{_QUOTED}(?:\s+{_QUOTED})*\s*\)|{_QUOTED}(?:\s+{_QUOTED})*)"
    ),
    # a header line, "Authorization: ..." or "x-amz-security-token:...", to
    # its end; "Signature:" with the value on the next line, as botocore logs it
    re.compile(
        r"^(?P<keep>[ \t]*(?P<name>[\w-]+)[ \t]*:[ \t]*(?:\r?\n[ \t]*)?)\S[^\r\n]*", re.MULTILINE
    ),
    # X-Amz-Signature=... in a query string, Signature=... in an Authorization
    # value, password='...' in a repr, -s AWS_SECRET_ACCESS_KEY=...
    re.compile(rf"(?P<keep>(?<![\w-])(?P<name>[\w-]+)=)(?:{_QUOTED}|[^\s&'\",;)>\]}}]+)"),
)
_BEARER = re.compile(r"(?P<keep>\bBearer\s+)[\w.~+/=-]+", re.IGNORECASE)


class Redactor:
    """Hides the secrets it is given, in the forms they are printed in, and
    the patterns' secrets."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms = sorted(
            {form for secret in secrets for form in _printed_forms(secret)}, key=len, reverse=True
        )
        self._known = re.compile("|".join(map(re.escape, self._forms)))

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any], environ: Mapping[str, str] = os.environ
    ) -> Redactor:
        return cls([*_secrets_in(settings), *_secrets_in(environ)])

    def __call__(self, text: str) -> str:
        # Each pattern only where it may match: a regular expression costs tens
        # of microseconds a line, a look for a plain string a fraction of one.
        if any(form in text for form in self._forms):
            text = self._known.sub(HIDDEN, text)
        if "://" in text and "@" in text:
            text = _URL_PASSWORD.sub(rf"\g<keep>{HIDDEN}@", text)
        lowered = text.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            for pattern in _NAMED:
                text = pattern.sub(_hide_named, text)
        if "bearer" in lowered:
            text = _BEARER.sub(rf"\g<keep>{HIDDEN}", text)
        return text


def _hide_named(match: re.Match[str]) -> str:
    """The value hidden if the name is a secret's; else looked through in
    turn (``url=https://host/k?X-Amz-Signature=...``)."""
    keep = match["keep"]
    if _SECRET_NAME.search(match["name"]):
        quote = match.groupdict().get("quote") or ""
        return f"{keep}{quote}{HIDDEN}{quote}"
    return keep + match.re.sub(_hide_named, match[0][len(keep) :])


_redactor = Redactor()


def redact(text: str) -> str:
    """``text`` without the secrets of the settings :func:`install` was given,
    or of any URL or header."""
    return _redactor(text)


def echo(text: object, file: TextIO | None = None) -> None:
    """Print a command's own message (standard output by default), redacted."""
    print(redact(str(text)), file=file or sys.stdout)


def install(settings: Mapping[str, Any]) -> None:
    """Redact every log record of this process from now on, and what
    :func:`redact` is given, knowing the secrets of ``settings`` and of the
    environment."""
    global _redactor
    _redactor = Redactor.from_settings(settings)
    make_record = logging.getLogRecordFactory()
    if not isinstance(make_record, _RedactedRecords):
        logging.setLogRecordFactory(_RedactedRecords(make_record))


_FORMATTER = logging.Formatter()  # the standard traceback text


class _RedactedRecords:
    """A log record factory whose records carry their message, traceback and
    stack already formatted and redacted."""

    def __init__(self, make_record: Callable[..., logging.LogRecord]) -> None:
        self.make_record = make_record

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: left for the handler to report
            return record
        if (hidden := redact(message)) != message:
            record.msg, record.args = hidden, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record


def _secrets_in(values: Mapping[Any, Any]) -> Iterator[str]:
    """The secrets among named values: a value whose name says it is secret,
    the password of any URL in a value or a name (a feed's URI), in nested
    dicts and lists and in JSON objects given as text (``-s REDIS_PARAMS=...``)."""
    for name, value in values.items():
        yield from (m["secret"] for m in _URL_PASSWORD.finditer(str(name)))
        if isinstance(value, str):
            if _SECRET_NAME.search(str(name)):
                yield value
            yield from (m["secret"] for m in _URL_PASSWORD.finditer(value))
            if value.startswith("{"):
                try:
                    value = json.loads(value)
                except ValueError:
                    continue
        if isinstance(value, Mapping):
            yield from _secrets_in(value)
        elif isinstance(value, list | tuple | set):
            for item in value:
                yield from _secrets_in({name: item})


def _printed_forms(secret: str) -> set[str]:
    forms = set()
    for plain in {secret, unquote(secret)}:
        escaped = plain.replace("\\", "\\\\")
        forms.update(
            (
                plain,
                quote(plain, safe=""),
                quote(plain),
                quote_plus(plain, safe=""),
                repr(plain)[1:-1],
                repr(plain.encode())[2:-1],
                escaped.replace("'", "\\'"),
                escaped.replace('"', '\\"'),
                json.dumps(plain)[1:-1],
            )
        )
    return {form for form in forms if len(form) >= SHORTEST_SECRET}
