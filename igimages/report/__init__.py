"""A self-contained HTML report of a store: what was downloaded, what failed and why.

``scrapy report`` (``igimages.commands.report``), or a crawl with
``IGIMAGES_REPORT=True``, writes ``report/index.html`` into the store: the
run at a glance and a contact sheet of every post, pages of
``IGIMAGES_REPORT_PAGE_SIZE`` posts that open from disk, offline.

* ``reading``: the store's manifests and summaries, checked as untrusted;
* ``thumbs``: thumbnails, once per distinct content, on every core;
* ``pages`` (with ``charts`` and ``advice``): the HTML of a page;
* ``build``: puts it together and publishes it whole.

Nothing here imports Scrapy: thumbnail workers start light.
"""

from igimages.report.build import ReportOptions, ReportResult, build_report
from igimages.report.reading import ReportError

__all__ = ["ReportError", "ReportOptions", "ReportResult", "build_report"]
