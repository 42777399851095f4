"""Secrets are never printed, at any log level: a real crawl at DEBUG, and the lines it dumps."""

from __future__ import annotations

import io
import json
import logging
import pprint

import pytest
from scrapy.settings import Settings

from igimages import redact as redaction
from igimages.redact import Redactor, install, redact
from tests import images
from tests.conftest import SECRET, assert_no_secret
from tests.imageserver import Route
from tests.redisserver import PASSWORD

# An AWS session token's shape: base64, with "/", "+" and "=".
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+igimages/Tq5s+Zm=="
EXIT_SOME_FAILED = 3


def test_a_worker_at_debug_into_a_bucket_prints_no_secret(
    server, crawl, write_posts, s3_bucket, job, tmp_path
):
    posts = write_posts(
        {
            "a": [
                server.add("/a.jpg", images.jpeg(seed=1)),
                server.add("/gone.jpg", Route(status=404)),
            ],
            "b": [server.add("/b.jpg", images.jpeg(seed=2))],
        }
    )
    log = tmp_path / "crawl.log"
    result = crawl(
        posts,
        *s3_bucket.settings,
        *job.settings,  # REDIS_URL with the password
        f"AWS_SESSION_TOKEN={SESSION_TOKEN}",
        "LOG_LEVEL=DEBUG",
        f"LOG_FILE={log}",
        env=s3_bucket.env,
        target=s3_bucket.uri,
    )

    logged = log.read_text()
    assert result.returncode == EXIT_SOME_FAILED, logged[-3000:]
    objects = s3_bucket.objects()
    manifest = [json.loads(line) for line in objects["manifest.jsonl"].decode().splitlines()]
    assert sorted(post["id"] for post in manifest) == ["a", "b"]
    # The settings were logged, every line of every library at DEBUG: the
    # secrets hidden in all of it, and in what the crawl wrote.
    printed = [result.stderr, result.stdout, logged]
    printed += [objects[name].decode() for name in ("manifest.jsonl", "failures.jsonl")]
    printed.append(objects["summary.json"].decode())
    for text in printed:
        assert_no_secret(text, PASSWORD, SECRET, SESSION_TOKEN)
    assert "'AWS_SESSION_TOKEN': '(hidden)'" in logged


# What botocore logs at DEBUG for a PutObject with a session token (trimmed).
BOTOCORE_REQUEST = (
    "<AWSPreparedRequest stream_output=False, method=PUT, url=http://127.0.0.1:4566/b/k, "
    "headers={'User-Agent': b'Boto3/1.44.8 md/Botocore#1.44.8', 'X-Amz-Date': "
    "b'20261204T174934Z', 'X-Amz-Security-Token': b\"TOKEN'/abc+def=\", 'X-Amz-Content-SHA256': "
    "b'e3b0c442', 'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261204/us-east-1/"
    "s3/aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=5d672d79c1'}>"
)
CANONICAL_REQUEST = (
    "CanonicalRequest:\nPUT\n/b/k\n\nhost:127.0.0.1:4566\nx-amz-date:20261204T174934Z\n"
    "x-amz-security-token:TOKEN'/abc+def=\n\nhost;x-amz-date;x-amz-security-token\nUNSIGNED-PAYLOAD"
)


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        (
            f"Sending http request: {BOTOCORE_REQUEST}",
            "Sending http request: <AWSPreparedRequest stream_output=False, method=PUT, "
            "url=http://127.0.0.1:4566/b/k, headers={'User-Agent': b'Boto3/1.44.8 "
            "md/Botocore#1.44.8', 'X-Amz-Date': b'20261204T174934Z', 'X-Amz-Security-Token': "
            "'(hidden)', 'X-Amz-Content-SHA256': b'e3b0c442', 'Authorization': '(hidden)'}>",
        ),
        (
            CANONICAL_REQUEST,
            CANONICAL_REQUEST.replace("token:TOKEN'/abc+def=", "token:(hidden)"),
        ),
        ("Signature:\n5d672d79c1", "Signature:\n(hidden)"),
        (
            "GET https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Signature=8a1f9c&X-Goog-Expires=600 and "
            "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=IQo%2Bx&X-Amz-Signature=77ab",
            "GET https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Signature=(hidden)&X-Goog-Expires=600 and "
            "https://b.s3.amazonaws.com/k?X-Amz-Security-Token=(hidden)&X-Amz-Signature=(hidden)",
        ),
        (
            "Authorization: Bearer ya29.a0AfH6SMB\nCookie: sessionid=abc; csrftoken=def\n"
            "Proxy-Authorization: Basic dXNlcjpwYXNz\nx-goog-iam-authorization-token: ya29.c",
            "Authorization: (hidden)\nCookie: (hidden)\n"
            "Proxy-Authorization: (hidden)\nx-goog-iam-authorization-token: (hidden)",
        ),
        ("refused the token Bearer ya29.a0AfH6SMB", "refused the token Bearer (hidden)"),
        (  # a secret inside the value of a name that is not one
            "<AWSPreparedRequest url=https://b.s3.amazonaws.com/k?X-Amz-Signature=77ab&X-Amz-D"
            "ate=20261204T174934Z, headers={'body': '{\"password\": \"pw-19\"}'}>",
            "<AWSPreparedRequest url=https://b.s3.amazonaws.com/k?X-Amz-Signature=(hidden)&X-Amz-D"
            "ate=20261204T174934Z, headers={'body': '{\"password\": \"(hidden)\"}'}>",
        ),
    ],
)
def test_credentials_in_http_dumps_are_hidden(line, hidden):
    assert redact(line) == hidden


@pytest.mark.parametrize(
    "password",
    [
        "plain",
        "it's",
        'say "hi"',
        "a:b:c",
        "p@ss@word",
        "p%40ss%3Aword",
        "with space",
        "back\\slash",
        "ünïcødé",
        "'\"`,;)>]}&=",
    ],
)
def test_a_url_password_is_hidden_whatever_characters_it_holds(password):
    url = f"redis://worker:{password}@10.0.0.5:6379/0"
    line = f"Redis at {url}: Error 111 connecting to 10.0.0.5:6379. Connection refused."
    assert redact(line) == (
        "Redis at redis://worker:(hidden)@10.0.0.5:6379/0: "
        "Error 111 connecting to 10.0.0.5:6379. Connection refused."
    )
    quote = repr(url)[0]  # as a repr escapes it, in a settings dump
    assert redact(repr(url)) == f"{quote}redis://worker:(hidden)@10.0.0.5:6379/0{quote}"


def test_known_secrets_are_hidden_in_every_form_they_are_printed_in():
    settings = Settings(
        {
            "REDIS_URL": "redis://:Kx'7%40z\"q@10.0.0.5:6379/0",
            "AWS_SECRET_ACCESS_KEY": "wJalr/K7MDENG+bPxRfi",
            "AWS_ACCESS_KEY_ID": "test",
            "REDIS_PARAMS": '{"password": "params-Pw-91"}',
            "FEEDS": {"ftp://me:feed-Pw-23@ftp.example/x.jsonl": {"format": "jsonlines"}},
        }
    )
    environ = {"GITHUB_TOKEN": "ghp_16C7e42F292c", "https_proxy": "http://me:proxy Pw 5@proxy:3128"}
    hide = Redactor.from_settings(settings, environ)
    for printed in [
        "Kx'7@z\"q",  # decoded, as redis-py sends it
        "Kx%277%40z%22q",  # percent-encoded
        "Kx\\'7%40z\"q",  # escaped in a repr
        "Kx'7@z\\\"q",  # escaped in JSON
        "wJalr%2FK7MDENG%2BbPxRfi",
        "wJalr/K7MDENG+bPxRfi",
        "params-Pw-91",
        "feed-Pw-23",
        "proxy%20Pw%205",
        "ghp_16C7e42F292c",
    ]:
        assert hide(f"[{printed}]") == "[(hidden)]", printed
    # A short value is left to the patterns: hidden anywhere, it would garble the log.
    assert hide("tests/test_secrets.py") == "tests/test_secrets.py"
    assert (
        hide(pprint.pformat({"AWS_ACCESS_KEY_ID": "test"})) == "{'AWS_ACCESS_KEY_ID': '(hidden)'}"
    )
    # A long value with spaces is split by pprint; still hidden by its name.
    split = pprint.pformat({"REDIS_PARAMS": {"password": "hunter2 " * 30}})
    assert "hunter2" not in redact(split)


def test_a_record_of_any_logger_is_redacted_with_its_traceback(monkeypatch):
    monkeypatch.setattr(redaction, "_redactor", redaction._redactor)  # install() replaces it
    make_record = logging.getLogRecordFactory()
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    logger = logging.getLogger("igimages.tests.secrets")  # no filter of an ancestor sees it
    logger.addHandler(handler)
    install(Settings({"AWS_SESSION_TOKEN": SESSION_TOKEN}))
    try:
        try:
            raise ConnectionError(f"refused with token {SESSION_TOKEN}")
        except ConnectionError:
            logger.error("PUT %s failed", "https://me:pw'2@10.0.0.5/k", exc_info=True)
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(make_record)

    text = written.getvalue()
    assert text.startswith("PUT https://me:(hidden)@10.0.0.5/k failed\nTraceback")
    assert "ConnectionError: refused with token (hidden)" in text
    assert_no_secret(text, SESSION_TOKEN, "pw'2")
