"""Clients for the job's Redis, made the way scrapy-redis makes them.

``REDIS_URL`` (or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB``) and
``REDIS_PARAMS`` are scrapy-redis' settings, with its defaults; a crawl uses
the asyncio client on Scrapy's asyncio reactor, commands the blocking one.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from scrapy.settings import BaseSettings
from scrapy_redis import connection

from igimages.job import JobError
from igimages.redact import redact

CONNECTIONS = 16  # per crawl process

#: What a Redis that is gone or refusing raises.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisUnavailable(JobError):
    """The job's Redis cannot be reached, or stopped answering: one line for the user."""


def blocking_client(settings: BaseSettings) -> redis.Redis:
    return connection.get_redis_from_settings(settings)


def async_client(settings: BaseSettings) -> redis.asyncio.Redis:
    """A client whose commands wait for one of ``CONNECTIONS`` connections.

    Each command in flight holds a connection: a crawl has a hundred images
    in flight, and each may be asking Redis something at once.
    """
    params: dict[str, Any] = {**connection.defaults.REDIS_PARAMS}
    params.update(settings.getdict("REDIS_PARAMS"))
    for setting, param in connection.SETTINGS_PARAMS_MAP.items():
        if value := settings.get(setting):
            params[param] = value
    params.pop("redis_cls", None)
    params.setdefault("max_connections", CONNECTIONS)
    pool_class = redis.asyncio.BlockingConnectionPool
    if url := params.pop("url", None):
        pool = pool_class.from_url(url, timeout=None, **params)
    else:
        pool = pool_class(timeout=None, **params)
    return redis.asyncio.Redis.from_pool(pool)


def describe(settings: BaseSettings) -> str:
    """Where the job's Redis is, without its password."""
    url = settings.get("REDIS_URL") or (
        f"redis://{settings.get('REDIS_HOST')}:{settings.get('REDIS_PORT') or 6379}"
    )
    return redact(url)


def unavailable(settings: BaseSettings, exc: BaseException) -> RedisUnavailable:
    reason = (str(exc) or type(exc).__name__).splitlines()[0]
    return RedisUnavailable(redact(f"Redis at {describe(settings)}: {reason}"))
