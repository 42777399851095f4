"""``-a plan=1``: what a crawl of this input would do, before a long run does it.

The input is read once, nothing is requested and nothing is written: the
store's index, if there is one, is only opened read-only.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scrapy.settings import BaseSettings

from igimages.addresses import AddressPolicy
from igimages.buckets import is_bucket, local_index_path
from igimages.inputs import PostSource, Skipped
from igimages.inputs.seen import SeenSet
from igimages.keys import image_key, link_expiry, safe_post_dir
from igimages.statedb import check
from igimages.store import INDEX_DIR

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
            f"  estimated time   {_duration(self.seconds)} with {self.in_flight} downloads in"
            f" flight, assuming {ASSUMED_SECONDS_PER_IMAGE} s per image"
            + (f" and at most {self.rate_cap:g} requests/s" if self.rate_cap else ""),
            "nothing was downloaded (plan=1)",
        ]
        return "\n".join(lines)


class StoredIndex:
    """The store's index, read-only: which image keys are stored, intact.

    A folder's files are checked for their size; a bucket's index (kept in
    the local state) is trusted, as the crawl trusts it.
    """

    def __init__(self, store: Path, path: Path | None = None) -> None:
        self.store = store
        self.check_files = path is None
        self.db: sqlite3.Connection | None = None
        self.damaged = ""  # why the index cannot be read, if it cannot
        self._listed: tuple[str, list[str]] = ("", [])  # a post folder's file names
        path = (path or store / INDEX_DIR / "index.sqlite3").absolute()
        if path.exists():
            # With no write-ahead log beside it, everything is in the file:
            # "immutable" reads it without creating the log's companion files.
            wal = path.with_name(f"{path.name}-wal").exists()
            mode = "mode=ro" if wal else "immutable=1"
            self.db = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True)
            try:
                check(self.db)
            except sqlite3.DatabaseError as exc:
                self._unreadable(exc)

    def has(self, key: str, post_dir: str, position: int) -> bool:
        """Whether a crawl would find ``key`` stored and need no request for it.

        The pipeline takes an image stored under the same key at any place
        (another post, another position) as a duplicate, without a request;
        and in a folder it adopts a file the index lacks at the image's place.
        """
        if self.check_files and self._file_there(post_dir, f"{position}_{key}."):
            return True
        if self.db is None:
            return False
        try:
            query = "SELECT path, bytes FROM images WHERE key = ? LIMIT 4"
            rows = self.db.execute(query, (key,)).fetchall()
        except sqlite3.DatabaseError as exc:
            self._unreadable(exc)
            return False
        return any(not self.check_files or _size(self.store / p) == size for p, size in rows)

    def _file_there(self, post_dir: str, prefix: str) -> bool:
        if self._listed[0] != post_dir:  # a post's images come one after another
            try:
                with os.scandir(self.store / post_dir) as entries:
                    self._listed = post_dir, [entry.name for entry in entries]
            except OSError:
                self._listed = post_dir, []
        return any(name.startswith(prefix) for name in self._listed[1])

    def _unreadable(self, exc: sqlite3.DatabaseError) -> None:
        self.close()
        self.db, self.damaged = None, str(exc)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def make_plan(source: PostSource, settings: BaseSettings) -> Plan:
    signed_hosts = tuple(settings.getlist("IGIMAGES_PATH_KEY_HOSTS"))
    judge_url = AddressPolicy.from_settings(settings).judge_url
    uri = settings["IMAGES_STORE"]
    store = Path(uri)
    index = StoredIndex(store, local_index_path(uri, settings) if is_bucket(uri) else None)
    plan = Plan(source.describe(), index=f"index of {uri}" if index.db or index.damaged else "")
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{math.ceil(seconds)}s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours < 48 else f"{hours / 24:.1f} days"
