"""One job over many crawl processes and machines, shared through Redis.

``-s REDIS_URL=redis://host:6379/0`` makes a crawl a worker of the job named
``IGIMAGES_JOB`` (by default, its ``IMAGES_STORE``): ``Job``, the add-on named
in ``ADDONS``, then puts the job's classes where a plain crawl has its own,
by settings alone, as scrapy-redis does; nothing in the crawl asks whether it
runs in a job. Every worker of a job stores into the same store; Redis holds,
under ``igimages:<job>:``:

* the job's posts: a queue, and a lease on each post a worker has taken,
  kept while the worker lives (``igimages.job.queue``), which the spider
  takes its posts from (``IGIMAGES_POSTS``: ``igimages.job.posts``);
* the store's index, by image key and by sha256, so that identical bytes
  fetched by two workers are stored once (``IGIMAGES_CATALOG``:
  ``igimages.job.catalog``);
* each host's share of the per-host limit and its cool-downs, so the job is
  one client as a server sees it (``IGIMAGES_HOST_LIMITS``: ``igimages.job.limits``);
* each finished post's manifest line and the job's counts, which become the
  store's ``manifest.jsonl``, ``failures.jsonl`` and ``summary.json`` when the
  job ends (``igimages.job.results``), in place of a crawl's own feeds.

``JobWorker`` (``igimages.job.worker``) is the extension that keeps a
worker's side of the job. This module is all that a crawl that is not a
worker imports: Redis's client is loaded by a job's crawls only.
"""

from __future__ import annotations

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings

from igimages.errors import OneLineError

#: What a worker of a job uses in place of a plain crawl's classes.
POSTS = "igimages.job.posts.JobPosts"
CATALOG = "igimages.job.catalog.JobCatalog"
HOST_SHARE = "igimages.job.limits.JobShare"
WORKER = "igimages.job.worker.JobWorker"
CRAWL_FEEDS = "igimages.outputs.feeds.StoreFeeds"  # the job writes its own when it ends


class JobError(OneLineError):
    """The job cannot be joined (its Redis unreachable, another store): one line."""


def is_job(settings: BaseSettings) -> bool:
    """Whether a crawl with these settings is a worker of a job (``REDIS_URL``)."""
    return bool(settings.get("REDIS_URL") or settings.get("REDIS_HOST"))


class Job:
    """The add-on that makes a crawl with ``REDIS_URL`` a worker of a job.

    It acts before the crawler is made (``update_pre_crawler_settings``), so
    that ``scrapy crawl`` sees where the posts come from, and again as the
    crawler applies its add-ons. It replaces the project's defaults, never
    what was given on the command line.
    """

    @classmethod
    def update_pre_crawler_settings(cls, settings: BaseSettings) -> None:
        if not is_job(settings):
            return
        _replace(settings, "IGIMAGES_POSTS", POSTS)
        _replace(settings, "IGIMAGES_CATALOG", CATALOG)
        _replace(settings, "IGIMAGES_STORE_LOCK", "shared")  # workers share the store
        _replace(settings, "IGIMAGES_PROGRESS_LIVE", False)  # workers share a terminal
        _add(settings, "IGIMAGES_HOST_LIMITS", HOST_SHARE, 900)
        _add(settings, "EXTENSIONS", WORKER, 500)
        _add(settings, "ADDONS", CRAWL_FEEDS, None)

    def update_settings(self, settings: BaseSettings) -> None:
        self.update_pre_crawler_settings(settings)


def _replace(settings: BaseSettings, name: str, value: object) -> None:
    """Set ``name`` unless it was given at a priority above the project's."""
    if (settings.getpriority(name) or 0) <= SETTINGS_PRIORITIES["project"]:
        settings.set(name, value, priority="project")


def _add(settings: BaseSettings, name: str, path: str, order: int | None) -> None:
    """Put ``path`` in the component dictionary ``name``, as Scrapy's
    ``set_in_component_priority_dict`` does, without importing it."""
    components = settings.getdict(name)
    components[path] = order
    settings.set(name, components, settings.getpriority(name) or 0)
