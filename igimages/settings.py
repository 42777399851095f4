"""Settings for igimages; each can be changed per run with ``-s NAME=VALUE``.

The defaults suit a real CDN: fast enough to finish thousands of posts in
minutes, polite enough not to be throttled for hours (see docs/settings.md).
"""

from importlib.util import find_spec

BOT_NAME = "igimages"
SPIDER_MODULES = ["igimages.spiders"]
NEWSPIDER_MODULE = "igimages.spiders"
COMMANDS_MODULE = "igimages.commands"
# Where the spider's posts come from: the input of -a posts=PATH. (Each class
# path below that a job replaces is replaced by its add-on, igimages.job.Job,
# when REDIS_URL is set: see "One job on many machines".)
IGIMAGES_POSTS = "igimages.inputs.posts.InputPosts"
USER_AGENT = "igimages/0.1 (image archive of scraped posts)"
LOG_LEVEL = "INFO"
STATS_DUMP = False  # the run summary (log and summary.json) says what matters

# --- Where the images go ---------------------------------------------------
# <IMAGES_STORE>/<post id>/<position>_<key>.<ext>, plus manifest.jsonl and
# failures.jsonl beside them (unless FEEDS is set), and the store's index.
IMAGES_STORE = "images"
ITEM_PIPELINES = {"igimages.pipeline.post_images.PostImagesPipeline": 300}
# The class that stores each kind of IMAGES_STORE, by URI scheme ("": a folder,
# given as a path or file://PATH), and the catalog of what is stored.
IGIMAGES_STORES = {
    "": "igimages.store.folder.FolderStore",
    "s3": "igimages.store.buckets.S3Store",
    "gs": "igimages.store.buckets.GCSStore",
    "az": "igimages.store.buckets.AzureStore",
}
IGIMAGES_CATALOG = "igimages.store.catalog.LocalCatalog"
# IMAGES_STORE may be a bucket: s3://BUCKET/PREFIX/ (AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION_NAME, AWS_ENDPOINT_URL for S3-compatible
# services, or the usual environment and credential files) or
# gs://BUCKET/PREFIX/ (GCS_PROJECT_ID, application default credentials) or
# az://CONTAINER/PREFIX/ (AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY,
# AZURE_STORAGE_ENDPOINT, or the usual environment). Feeds and the summary then
# go into the bucket too. At most this many uploads at once; the index is kept
# in IGIMAGES_STATE_DIR (default: the user's cache folder) and mirrored into
# the bucket every SYNC_INTERVAL seconds and at the end.
IGIMAGES_STORE_UPLOADS = 16
IGIMAGES_STATE_DIR = ""
IGIMAGES_INDEX_SYNC_INTERVAL = 60.0
# One crawl writes a store at a time (igimages.store.lock): a second one on the
# same store is refused at start. "shared": the workers of a job (set by the job).
IGIMAGES_STORE_LOCK = "exclusive"
# With -s JOBDIR=DIR, finished posts are remembered there and not gone
# through again when the job is resumed.
SPIDER_MIDDLEWARES = {"igimages.resume.JobResumeMiddleware": 100}
# The manifest and failure feeds, and the summary, beside the images
# (igimages.outputs.feeds.StoreFeeds) unless FEEDS is set; and the job's add-on.
ADDONS = {
    "igimages.outputs.feeds.StoreFeeds": 100,
    "igimages.job.Job": 200,
}
FEED_EXPORTERS = {
    "failures": "igimages.outputs.feeds.FailuresExporter",
    "parquet": "igimages.outputs.dataset.ParquetExporter",  # needs pyarrow
    "imagefolder": "igimages.outputs.dataset.ImageFolderExporter",
}
# True: the store is a data set too, with manifest.parquet (a row per image,
# failed ones too) and metadata.jsonl (Hugging Face imagefolder metadata, a
# row per stored image file) beside the other feeds, a crawl's or a job's
# (igimages.outputs.dataset). Needs pyarrow: pip install 'igimages[dataset]';
# without it the crawl refuses to start.
IGIMAGES_DATASET = False
# The function that gives each new content its perceptual hash (bytes -> 16 hex
# characters), for near-copy groups (igimages.similar); "" for none: a run then
# spends no CPU on it (2 to 4 ms a JPEG, far more a WebP) and groups by bytes only.
IGIMAGES_PERCEPTUAL_HASH = "igimages.store.keeper.perceptual_hash"
FEED_STORAGES = {  # whole or not at all; one that could not be stored is exit status 4
    "": "igimages.outputs.storages.FileFeed",
    "file": "igimages.outputs.storages.FileFeed",
    "s3": "igimages.outputs.storages.BucketFeed",
    "gs": "igimages.outputs.storages.BucketFeed",
    "az": "igimages.outputs.storages.BucketFeed",
}
FEED_EXPORT_ENCODING = "utf-8"

# --- What counts as an image -------------------------------------------------
IMAGES_MIN_WIDTH = 0  # smaller images fail as too_small
IMAGES_MIN_HEIGHT = 0
IGIMAGES_MAX_PIXELS = 64_000_000  # larger ones fail as too_many_pixels (decompression bombs)
IGIMAGES_MAX_IMAGES_PER_POST = 0  # 0: every image of a post
# Hosts whose URLs carry rotating signatures: an image there is known by its
# path alone, so a re-scrape with fresh query strings finds it stored.
IGIMAGES_PATH_KEY_HOSTS = ["cdninstagram.com", "fbcdn.net"]

# --- Concurrency ---------------------------------------------------------------
# Ceilings on image downloads in flight, overall and per host, enforced by
# DownloadGateMiddleware (Scrapy applies neither to media requests). Under
# them each host's own limit follows its answers (AUTOTHROTTLE_ENABLED below).
# 100 is where one crawl process runs out of CPU on two cores, and several
# times what fills a 300 Mbit/s link at 100 ms (docs/settings.md).
CONCURRENT_REQUESTS = 100
CONCURRENT_REQUESTS_PER_DOMAIN = 100
# uvloop's event loop where it is installed (not on Windows): about 5% less CPU
# per image than asyncio's own, measured by the benchmark (docs/speed.md).
ASYNCIO_EVENT_LOOP = "uvloop.Loop" if find_spec("uvloop") else None
DOWNLOADER_MIDDLEWARES = {
    "igimages.fetch.retry.BackoffRetryMiddleware": 550,
    "igimages.fetch.gate.DownloadGateMiddleware": 950,
}
# Optional ceilings on requests started per second, overall and per host
# (0: none), for CDNs that count requests rather than connections.
IGIMAGES_MAX_RATE = 0.0
IGIMAGES_MAX_RATE_PER_HOST = 0.0
# Posts handed to the pipeline at once (0: CONCURRENT_REQUESTS). Bounds memory.
IGIMAGES_POSTS_IN_FLIGHT = 0
# Each host's limit starts at START_CONCURRENCY, grows while the host answers
# well and shrinks on 429, 503, timeouts, dropped connections and latency that
# keeps rising (igimages.fetch.adaptive, in AutoThrottle's place). False: every host
# gets CONCURRENT_REQUESTS_PER_DOMAIN. AUTOTHROTTLE_DEBUG logs each change.
AUTOTHROTTLE_ENABLED = True
IGIMAGES_START_CONCURRENCY = 32
# Each host's limit: its ceiling, then each of these in order, each built
# around the one before (igimages.fetch.limits); a job adds its share.
# As with Scrapy's EXTENSIONS, IGIMAGES_HOST_LIMITS adds to the _BASE ones
# (None turns one off).
IGIMAGES_HOST_LIMITS_BASE = {"igimages.fetch.adaptive.AdaptiveLimits": 100}
IGIMAGES_HOST_LIMITS = {}

# --- One job on many machines ---------------------------------------------------
# REDIS_URL=redis://HOST:6379/0 makes a crawl a worker of the job IGIMAGES_JOB
# (default: the store): it queues its -a posts= input for the job, if any,
# then takes the job's posts from Redis (igimages.job, docs/many-machines.md):
# the job's add-on puts the job's classes in IGIMAGES_POSTS, IGIMAGES_CATALOG,
# IGIMAGES_HOST_LIMITS, EXTENSIONS (JobWorker) and ADDONS (the job writes the
# store's feeds when it ends, in StoreFeeds' place).
# A worker that stops beating loses its posts to the others after
# LEASE_SECONDS; a worker waits up to JOB_WAIT seconds for a job with no posts.
REDIS_URL = ""
IGIMAGES_JOB = ""
IGIMAGES_LEASE_SECONDS = 30.0
IGIMAGES_JOB_WAIT = 60.0

# --- Each download ---------------------------------------------------------------
DOWNLOAD_TIMEOUT = 30
# Retry what may pass (408, 429, 5xx, timeouts, dropped connections) after
# BASE * 2^(n-1) seconds (at most MAX, with jitter), or after the server's
# Retry-After (at most RETRY_AFTER_MAX); a 429 with Retry-After also pauses
# its whole host for that long. 400, 401, 403, 404, 410... fail at once.
RETRY_TIMES = 2  # three attempts in all, as the sequential downloader did
RETRY_HTTP_CODES = [408, 429, *range(500, 600)]
RETRY_EXCEPTIONS = [  # Scrapy's, less the Twisted handler's proxy TunnelError
    "scrapy.exceptions.CannotResolveHostError",
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.DownloadFailedError",
    "scrapy.exceptions.DownloadTimeoutError",
    "scrapy.exceptions.ResponseDataLossError",
    "twisted.internet.error.ConnectionDone",
    "twisted.internet.error.ConnectError",
    "twisted.internet.error.ConnectionLost",
    OSError,  # HttpCompressionMiddleware, on an empty compressed body
]
IGIMAGES_RETRY_BACKOFF_BASE = 1.0
IGIMAGES_RETRY_BACKOFF_MAX = 60.0
IGIMAGES_RETRY_AFTER_MAX = 600.0
RETRY_GIVE_UP_LOG_LEVEL = "DEBUG"  # the pipeline reports each failed image
DOWNLOAD_MAXSIZE = 64 * 1024 * 1024
DOWNLOAD_WARNSIZE = 16 * 1024 * 1024
MEDIA_ALLOW_REDIRECTS = True
REDIRECT_MAX_TIMES = 5
COOKIES_ENABLED = False
ROBOTSTXT_OBEY = False

# --- Safety -----------------------------------------------------------------------
# Only http and https: a posts file must not be able to read local files.
# HTTP goes through Scrapy's aiohttp handler: a quarter less CPU than its
# Twisted one (see igimages/handlers.py). It never connects to link-local or
# cloud metadata addresses (igimages.fetch.addresses); True here refuses loopback,
# private and shared addresses too, which a local mirror or a test server
# uses, hence allowed by default.
IGIMAGES_REFUSE_PRIVATE_ADDRESSES = False
# HTTPS certificates and host names are checked against the system's CAs (or
# SSL_CERT_FILE / SSL_CERT_DIR); False accepts any, for a private mirror.
DOWNLOAD_VERIFY_CERTIFICATES = True
DOWNLOAD_HANDLERS = {
    "http": "igimages.fetch.handler.ImageDownloadHandler",
    "https": "igimages.fetch.handler.ImageDownloadHandler",
    "file": None,
    "data": None,
    "s3": None,
    "ftp": None,
}

# --- Reporting --------------------------------------------------------------------
IGIMAGES_PROGRESS_INTERVAL = 2.0  # seconds between progress reports; 0: none
IGIMAGES_PROGRESS_LIVE = True  # redrawn in place on a terminal (a job's workers: False)
# The summary keeps this many points at most of the run's counts over time
# (igimages.outputs.timeline), for the report's charts; 0: none.
IGIMAGES_TIMELINE_POINTS = 256
# `scrapy report` writes <IMAGES_STORE>/report/index.html (igimages.report):
# this many posts a page, thumbnails made by this many processes (0: one per
# core). IGIMAGES_REPORT=True makes a crawl that finished write it too.
IGIMAGES_REPORT = False
IGIMAGES_REPORT_PAGE_SIZE = 200
IGIMAGES_REPORT_WORKERS = 0
EXTENSIONS = {
    "igimages.store.lock.StoreLock": 100,
    # Before ImageProgress: the timeline's last point is in the summary.
    "igimages.outputs.timeline.RunTimeline": 490,
    "igimages.outputs.progress.ImageProgress": 500,
    "igimages.runtime.PromptClose": 500,
    "igimages.runtime.RuntimeTuning": 500,
}

# --- Scrapy's own components -------------------------------------------------------
# Only those an image download goes through. Scrapy imports every component
# named in these lists, even one set to None in DOWNLOADER_MIDDLEWARES or
# EXTENSIONS, and the unused ones (cookies, robots.txt, HTTP cache, telnet,
# remote control...) cost about 0.4 s of start-up; so the base lists are
# replaced here rather than trimmed. Retries are BackoffRetryMiddleware's,
# statistics ImageProgress's; the spider requests no pages (no offsite
# filter, no downloader/* counts, which cost CPU on every image).
DOWNLOADER_MIDDLEWARES_BASE = {
    "scrapy.downloadermiddlewares.downloadtimeout.DownloadTimeoutMiddleware": 350,
    "scrapy.downloadermiddlewares.defaultheaders.DefaultHeadersMiddleware": 400,
    "scrapy.downloadermiddlewares.useragent.UserAgentMiddleware": 500,
    "scrapy.downloadermiddlewares.httpcompression.HttpCompressionMiddleware": 590,
    "igimages.fetch.redirect.ImageRedirectMiddleware": 600,  # Scrapy's, for mailto: too
    "scrapy.downloadermiddlewares.httpproxy.HttpProxyMiddleware": 750,
}
EXTENSIONS_BASE = {
    "scrapy.extensions.corestats.CoreStats": 0,
    "scrapy.extensions.logcount.LogCount": 0,
    "scrapy.extensions.memusage.MemoryUsage": 0,
    "scrapy.extensions.closespider.CloseSpider": 0,
    "scrapy.extensions.feedexport.FeedExporter": 0,
}
# Fingerprints from the URL alone, without Scrapy's costly canonicalisation.
REQUEST_FINGERPRINTER_CLASS = "igimages.keys.UrlFingerprinter"
