"""Host names that resolve where a test says, in the crawls the tests start.

Put on a crawl's ``PYTHONPATH`` (``tests.conftest.crawl_env(hosts=...)``),
this wraps ``socket.getaddrinfo``, which aiohttp's default resolver and
igimages' own checks go through, for the names in ``IGIMAGES_TEST_HOSTS``
(JSON: name -> address, or "" for a name that does not resolve;
``*.example.com`` covers every name under it). Other names resolve as usual.
uvloop resolves in libuv, past ``socket``: its loop is given a
``getaddrinfo`` that goes through the wrapped one, in a thread as asyncio's.
"""

from __future__ import annotations

import json
import os
import socket

_HOSTS: dict[str, str] = {
    name.lower().rstrip("."): address
    for name, address in json.loads(os.environ.get("IGIMAGES_TEST_HOSTS", "{}")).items()
}
_system_getaddrinfo = socket.getaddrinfo


def _address_of(host: object) -> str | None:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return None
    name = host.lower().rstrip(".")
    if name in _HOSTS:
        return _HOSTS[name]
    for pattern, address in _HOSTS.items():
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return address
    return None


def _getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    address = _address_of(host)
    if address == "":
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _system_getaddrinfo(host if address is None else address, *args, **kwargs)


def _resolve_through_socket(loop_class: type) -> type:
    class Loop(loop_class):  # type: ignore[misc, valid-type]
        async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
            return await self.run_in_executor(
                None, socket.getaddrinfo, host, port, family, type, proto, flags
            )

    return Loop


if _HOSTS:
    socket.getaddrinfo = _getaddrinfo
    try:
        import uvloop
    except ImportError:
        pass
    else:
        uvloop.Loop = _resolve_through_socket(uvloop.Loop)
