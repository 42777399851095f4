"""``-a plan=1``: what a crawl of this input would do, before a long run does it.

The input is read once, nothing is requested and nothing is written: the
store's index, if there is one, is only opened read-only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from scrapy.settings import BaseSettings

from igimages.fetch.addresses import AddressPolicy
from igimages.inputs import PostSource, Skipped
from igimages.inputs.seen import SeenSet
from igimages.keys import image_key, link_expiry, safe_post_dir
from igimages.store import FOLDER, StoreError, StoreUri, state_folder
from igimages.store.folder import file_intact
from igimages.store.index import INDEX_NAME, ImageIndex, StoredImage
from igimages.units import duration

#: A CDN image of a few hundred KB, request to last byte; the estimate's one guess.
ASSUMED_SECONDS_PER_IMAGE = 0.5


@dataclass(slots=True)
class Plan:
    source: str
    posts: int = 0
    bad_posts: int = 0
    duplicates: int = 0
    images: int = 0
    distinct_urls: int = 0
    hosts: int = 0
    stored: int = 0
    expired: int = 0
    unsupported: int = 0
    to_download: int = 0
    in_flight: int = 1
    rate_cap: float = 0.0  # requests per second at most, from the rate settings (0: none)
    index: str = ""
    damaged_index: str = ""  # why the index could not be read

    def _damaged_index(self) -> list[str]:
        if not self.damaged_index:
            return []
        return [
            f"                   (the index is damaged: {self.damaged_index}; the crawl sets it"
            " aside and rebuilds it from what is stored, with no request for stored images)"
        ]

    @property
    def seconds(self) -> float:
        rate = self.in_flight / ASSUMED_SECONDS_PER_IMAGE
        if self.rate_cap:
            rate = min(rate, self.rate_cap)
        return self.to_download / rate

    def report(self) -> str:
        lines = [
            f"plan for {self.source}",
            f"  posts            {self.posts:,}  (skipped: {self.bad_posts:,} bad,"
            f" {self.duplicates:,} repeated)",
            f"  images           {self.images:,}",
            f"  distinct URLs    {self.distinct_urls:,}",
            f"  hosts            {self.hosts:,}",
            f"  already stored   {self.stored:,}  ({self.index or 'no store yet'})",
            *self._damaged_index(),
            f"  links expired    {self.expired:,}  (oe= in the past: they fail unrequested;"
            " a fresh scrape gives working ones)",
        ]
        if self.unsupported:
            lines.append(
                f"  not requested    {self.unsupported:,}  (not http(s), unparseable, or a"
                " refused address)"
            )
        lines += [
            f"  to download      {self.to_download:,}  (distinct, not stored, not expired)",
            f"  estimated time   {duration(self.seconds, estimate=True)} with {self.in_flight}"
            f" downloads in flight, assuming {ASSUMED_SECONDS_PER_IMAGE} s per image"
            + (f" and at most {self.rate_cap:g} requests/s" if self.rate_cap else ""),
            "nothing was downloaded (plan=1)",
        ]
        return "\n".join(lines)


class StoredIndex:
    """The store's index, read-only: which image keys are stored, intact.

    A folder's files are checked for their size; a bucket's index (kept in
    the local state) is trusted, as the crawl trusts it.
    """

    def __init__(self, settings: BaseSettings) -> None:
        uri = StoreUri.from_settings(settings)
        self.folder = Path(uri.location) if uri.scheme == FOLDER else None
        self.index: ImageIndex | None = None
        self.damaged = ""  # why the index cannot be read, if it cannot
        self._listed: tuple[str, list[str]] = ("", [])  # a post folder's file names
        if self.folder is None:
            intact: Callable[[StoredImage], bool] = lambda image: True  # noqa: E731
        else:
            intact = partial(file_intact, self.folder)
        try:
            path = state_folder(settings) / INDEX_NAME
            self.index = ImageIndex.read_only(path, intact, uri.identity)
        except StoreError as exc:
            self.damaged = str(exc)

    def has(self, key: str, post_dir: str, position: int) -> bool:
        """Whether a crawl would find ``key`` stored and need no request for it.

        The pipeline takes an image stored under the same key at any place
        (another post, another position) as a duplicate, without a request;
        and in a folder it adopts a file the index lacks at the image's place.
        """
        if self.folder is not None and self._file_there(post_dir, f"{position}_{key}."):
            return True
        if self.index is None:
            return False
        try:
            return self.index.find_by_key(key, post_dir, position) is not None
        except StoreError as exc:
            self.close()
            self.index, self.damaged = None, str(exc)
            return False

    def _file_there(self, post_dir: str, prefix: str) -> bool:
        if self._listed[0] != post_dir:  # a post's images come one after another
            try:
                with os.scandir(self.folder / post_dir) as entries:  # type: ignore[operator]
                    self._listed = post_dir, [entry.name for entry in entries]
            except OSError:
                self._listed = post_dir, []
        return any(name.startswith(prefix) for name in self._listed[1])

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


def make_plan(source: PostSource, settings: BaseSettings) -> Plan:
    signed_hosts = tuple(settings.getlist("IGIMAGES_PATH_KEY_HOSTS"))
    judge_url = AddressPolicy.from_settings(settings).judge_url
    uri = settings["IMAGES_STORE"]
    index = StoredIndex(settings)
    plan = Plan(source.describe(), index=f"index of {uri}" if index.index or index.damaged else "")
    urls, keys, hosts, now = SeenSet(), SeenSet(), set(), time.time()
    try:
        for entry in source.entries(settings.getint("IGIMAGES_MAX_IMAGES_PER_POST")):
            if isinstance(entry, Skipped):
                if entry.kind == "bad":
                    plan.bad_posts += 1
                else:
                    plan.duplicates += 1
                continue
            plan.posts += 1
            post_dir = safe_post_dir(entry.id)
            for number, url in enumerate(entry.image_urls):
                plan.images += 1
                urls.add(url)
                if judge_url(url) is not None:
                    plan.unsupported += 1
                    continue
                hosts.add(urlsplit(url).hostname)
                key = image_key(url, signed_hosts)
                if index.has(key, post_dir, entry.position(number)):
                    plan.stored += 1
                elif (expiry := link_expiry(url, signed_hosts)) and expiry < now:
                    plan.expired += 1
                elif keys.add(key):  # the same image again is not downloaded again
                    plan.to_download += 1
    finally:
        index.close()
    plan.damaged_index = index.damaged
    plan.distinct_urls, plan.hosts = len(urls), len(hosts)
    per_host = settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
    plan.in_flight = max(1, min(settings.getint("CONCURRENT_REQUESTS"), plan.hosts * per_host))
    caps = [settings.getfloat("IGIMAGES_MAX_RATE")]
    caps.append(settings.getfloat("IGIMAGES_MAX_RATE_PER_HOST") * plan.hosts)
    plan.rate_cap = min((cap for cap in caps if cap > 0), default=0.0)
    return plan
