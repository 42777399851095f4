"""``scrapy report``: write an HTML report of the store, ``<IMAGES_STORE>/report/index.html``.

Exit status 0 when written; 2 when the store cannot be read (no manifest, a
malformed line, a bucket store); 1 when the report cannot be written.
"""

from __future__ import annotations

import argparse
import sys

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError
from scrapy.settings import BaseSettings

from igimages.redact import echo


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings = {"LOG_ENABLED": False}  # noqa: RUF012

    def syntax(self) -> str:
        return "[-s IMAGES_STORE=PATH]"

    def short_desc(self) -> str:
        return "Write an HTML report of the store: IMAGES_STORE/report/index.html"

    def long_desc(self) -> str:
        return (
            "Write an HTML report of what a crawl left in IMAGES_STORE: counts, failures by "
            "reason with advice, charts over the run, and a contact sheet of every post, in "
            "pages of IGIMAGES_REPORT_PAGE_SIZE posts, to open from disk. Thumbnails are kept "
            "in .igimages/thumbs/ and made only for new images."
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if args:
            raise UsageError(
                "scrapy report takes no arguments: give the store with -s IMAGES_STORE=PATH"
            )
        assert self.settings is not None
        self.exitcode = write_report(self.settings)


def write_report(settings: BaseSettings) -> int:
    """Write the report and say so in one line; the exit status (also for ``scrapy crawl``)."""
    # Imported when used: Scrapy imports every command module whatever the command.
    from igimages.report.build import ReportOptions, build_report
    from igimages.report.reading import ReportError

    try:
        result = build_report(ReportOptions.from_settings(settings))
    except ReportError as exc:
        echo(f"error: report not written: {exc}", sys.stderr)
        return exc.exit_status
    for warning in result.warnings:
        echo(f"warning: {warning}", sys.stderr)
    echo(result.describe())
    return 0
