"""The report's HTML: one page of posts, with the overview on the first.

Pages are plain HTML made here, every text from the manifest passed through
``html.escape``; the script (``static/report.js``) only shows and hides what
is already there. The little data the script needs is JSON inside a
``<script type="application/json">`` with ``<``, ``>`` and ``&`` escaped,
and a Content-Security-Policy allows the report's own files only: a post id
or URL written as HTML or script is text, and a link is made only from an
http(s) URL.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from igimages.items import CACHED, DOWNLOADED, DUPLICATE, FAILED, STATUSES
from igimages.report.advice import advice
from igimages.report.charts import line_chart, timeline_series
from igimages.report.reading import ReportImage, ReportPost
from igimages.report.reposts import Reposts
from igimages.report.thumbs import THUMB_SIZE, thumb_path
from igimages.units import duration, size

CSP = (
    "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)
PAGE_LINKS_AROUND = 3  # page links shown on each side of the current one
LINKS_SHOWN = 12  # links to other posts or pages shown before "and N more"


def page_name(number: int) -> str:
    return "index.html" if number == 1 else f"page-{number}.html"


@dataclass(frozen=True, slots=True)
class PageInfo:
    """What every page shows about the report as a whole."""

    number: int
    pages: int
    store_name: str
    generated: str
    buckets: int


@dataclass
class Overview:
    """The store at a glance, added up post by post as the pages are written."""

    posts: int = 0
    images: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    reason_pages: dict[str, list[int]] = field(default_factory=dict)
    posts_with_failures: int = 0
    posts_without_images: int = 0
    stored_bytes: int = 0
    summaries: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, post: ReportPost, page: int) -> None:
        self.posts += 1
        if not post.images:
            self.posts_without_images += 1
        failed = False
        for image in post.images:
            self.images[image.status] += 1
            if image.status == FAILED:
                failed = True
                self.reasons[image.reason] += 1
                pages = self.reason_pages.setdefault(image.reason, [])
                if not pages or pages[-1] != page:
                    pages.append(page)
            elif image.status in (DOWNLOADED, CACHED) and image.bytes:
                self.stored_bytes += image.bytes
        self.posts_with_failures += failed


def render_page(
    info: PageInfo,
    posts: list[ReportPost],
    no_preview: dict[str, str],
    reposts: Reposts,
    overview: Overview | None = None,
) -> str:
    """A whole page; ``no_preview``: content whose thumbnail could not be made, and why;
    ``reposts``: which other posts hold each image or a near-copy of it."""
    title = f"igimages report: {info.store_name}"
    if info.pages > 1:
        title += f", page {info.number} of {info.pages}"
    data = {"page": info.number, "pages": info.pages, "buckets": info.buckets}
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        '<link rel="stylesheet" href="report.css">',
        '<script src="report.js" defer></script></head><body>',
        '<header class="top"><h1>igimages report '
        f'<span class="store">{escape(info.store_name)}</span></h1>',
        _page_nav(info),
        '<form class="find" id="find"><label for="find-id">Find a post</label>'
        '<input id="find-id" type="search" placeholder="post id" autocomplete="off">'
        '<button type="submit">Find</button>'
        '<span class="find-message" id="find-message" role="status"></span></form>',
        "</header><main>",
    ]
    if overview is not None:
        parts.append(_overview(overview))
    parts.append(_filters(posts))
    parts.append('<div id="posts">')
    parts.extend(_post(post, no_preview, reposts) for post in posts)
    if not posts:
        parts.append('<p class="none">No posts in the manifest.</p>')
    parts.append("</div></main>")
    parts.append(f"<footer>{_page_nav(info)}<p>Made {escape(info.generated)}.</p></footer>")
    parts.append(f'<script type="application/json" id="report-data">{json_for_html(data)}</script>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def json_for_html(value: Any) -> str:
    """JSON that cannot end the ``<script>`` element it sits in, nor open another."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page_nav(info: PageInfo) -> str:
    if info.pages <= 1:
        return ""
    current = info.number
    shown = {1, info.pages, *range(current - PAGE_LINKS_AROUND, current + PAGE_LINKS_AROUND + 1)}
    parts = ['<nav class="pages" aria-label="pages">']
    if current > 1:
        parts.append(_page_link(current - 1, "« previous"))
    previous = 0
    for number in sorted(n for n in shown if 1 <= n <= info.pages):
        if number > previous + 1:
            parts.append('<span class="gap">…</span>')
        if number == current:
            parts.append(f'<span class="current" aria-current="page">{number}</span>')
        else:
            parts.append(_page_link(number, str(number)))
        previous = number
    if current < info.pages:
        parts.append(_page_link(current + 1, "next »"))
    parts.append("</nav>")
    return "".join(parts)


def _page_link(number: int, text: str) -> str:
    return f'<a href="{page_name(number)}" data-page="{number}">{escape(text)}</a>'


def _filters(posts: list[ReportPost]) -> str:
    """Buttons by status and a choice of failure reason, with this page's counts."""
    by_status: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for post in posts:
        by_status.update(post.statuses)
        by_reason.update(post.reasons)
    parts = ['<div class="filters" role="group" aria-label="filters">']
    for status in ("all", *STATUSES):
        count = len(posts) if status == "all" else by_status[status]
        parts.append(
            f'<button type="button" data-status="{status}" aria-pressed="false">'
            f"{status} ({count})</button>"
        )
    parts.append('<label for="reason">reason</label><select id="reason">')
    parts.append('<option value="all">any</option>')
    for reason, count in sorted(by_reason.items()):
        value = escape(reason)
        parts.append(f'<option value="{value}">{value} ({count})</option>')
    parts.append('</select><span class="shown" id="shown" role="status"></span></div>')
    return "".join(parts)


def _post(post: ReportPost, no_preview: dict[str, str], reposts: Reposts) -> str:
    statuses = Counter(image.status for image in post.images)
    meta = ", ".join(f"{statuses[s]} {s}" for s in (*STATUSES, "interrupted") if statuses[s])
    count = len(post.images)
    meta = f"{count} image{'s' if count != 1 else ''}" + (f": {meta}" if meta else "")
    post_id = escape(post.id)
    if _http(post.url):
        heading = (
            f'<a class="post-id" href="{escape(post.url)}" rel="noopener noreferrer">{post_id}</a>'
        )
    else:
        heading = f'<span class="post-id">{post_id}</span>'
    parts = [
        f'<article class="post" data-id="{post_id}" '
        f'data-statuses="{escape(" ".join(post.statuses))}" '
        f'data-reasons="{escape(" ".join(post.reasons))}">',
        f'<h2>{heading}<span class="meta">{escape(meta)}</span></h2>',
    ]
    if post.images:
        parts.append('<ol class="sheet">')
        parts.extend(
            _tile(image, no_preview, reposts.others(image, post.id))
            for image in sorted(post.images, key=_position)
        )
        parts.append("</ol>")
    else:
        parts.append('<p class="none">No images in this post.</p>')
    parts.append("</article>")
    return "".join(parts)


def _position(image: ReportImage) -> int:
    return image.position


def _tile(image: ReportImage, no_preview: dict[str, str], others: list[tuple[str, int]]) -> str:
    status = escape(image.status)
    reason = escape(image.reason) if image.status == FAILED else ""
    head = f'<li class="tile" data-status="{status}" data-reason="{reason}">'
    caption = [
        f'<span class="position">#{image.position}</span> '
        f'<span class="badge {status}">{status}</span>'
    ]
    if image.status == FAILED:
        frame = _failed_frame(image)
        if _http(image.url):
            caption.append(
                f'<br><a href="{escape(image.url)}" rel="noopener noreferrer">source URL</a>'
            )
    else:
        frame = _image_frame(image, no_preview)
        details = []
        if image.bytes is not None:
            details.append(size(image.bytes))
        if image.width and image.height:
            details.append(f"{image.width}\u00d7{image.height}")
        if image.format:
            details.append(escape(image.format))
        if details:
            caption.append(" · " + " · ".join(details))
        if image.status == DUPLICATE and image.duplicate_of:
            caption.append(
                f'<br>same file as <a href="{_store_href(image.duplicate_of)}">'
                f"{escape(image.duplicate_of)}</a>"
            )
        if others:
            caption.append(_also_in(others))
    return f'{head}{frame}<div class="caption">{"".join(caption)}</div></li>'


def _also_in(others: list[tuple[str, int]]) -> str:
    """The line "also in N posts", each (the first ``LINKS_SHOWN``) linked on its page."""
    count = len(others)
    links = ", ".join(
        f'<a href="{page_name(page)}#{escape(urlencode({"find": post_id}, quote_via=quote))}">'
        f"{escape(post_id)}</a>"
        for post_id, page in others[:LINKS_SHOWN]
    )
    if count > LINKS_SHOWN:
        links += f" and {count - LINKS_SHOWN} more"
    return (
        f'<br><span class="also-in">also in {count} post{"s" if count != 1 else ""}: {links}</span>'
    )


def _image_frame(image: ReportImage, no_preview: dict[str, str]) -> str:
    if image.path is None:
        return '<div class="frame placeholder missing">no file: its path leaves the store</div>'
    href = _store_href(image.path)
    label = f"image {image.position}"
    if image.sha256 is None or image.sha256 in no_preview:
        why = no_preview.get(image.sha256 or "", "no content hash in the manifest")
        return (
            f'<a class="frame placeholder missing" href="{href}" title="{escape(why)}">'
            "no preview<br>open the file</a>"
        )
    width, height = _thumb_size(image.width, image.height)
    size = f' width="{width}" height="{height}"' if width else ""
    return (
        f'<a class="frame" href="{href}"><img src="{_store_href(thumb_path(image.sha256))}"'
        f'{size} alt="{escape(label)}" loading="lazy" decoding="async"></a>'
    )


def _failed_frame(image: ReportImage) -> str:
    reason = image.reason or image.status
    lines = [f'<span class="reason">{escape(reason)}</span>']
    if image.http_status:
        lines.append(f"HTTP {image.http_status}")
    if tip := advice(reason):
        lines.append(escape(tip))
    if image.detail:
        detail = image.detail if len(image.detail) <= 120 else image.detail[:119] + "…"
        lines.append(f"<small>{escape(detail)}</small>")
    spans = "".join(f"<span>{line}</span>" for line in lines)
    return f'<div class="frame placeholder">{spans}</div>'


def _thumb_size(width: int | None, height: int | None) -> tuple[int, int]:
    if not width or not height:
        return 0, 0
    scale = min(1.0, THUMB_SIZE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _store_href(path: str) -> str:
    """A link from a page in ``report/`` to a file of the store (a checked relative path)."""
    return escape("../" + quote(path, safe="/~"))


def _http(url: str) -> bool:
    try:
        return urlsplit(url).scheme.lower() in ("http", "https") and bool(urlsplit(url).netloc)
    except ValueError:
        return False


def _overview(overview: Overview) -> str:
    images = sum(overview.images.values())
    figures = [
        ("posts", overview.posts, ""),
        ("images", images, ""),
        *((status, overview.images[status], status) for status in STATUSES),
        ("posts with failures", overview.posts_with_failures, "failed"),
    ]
    if overview.posts_without_images:
        figures.append(("posts without images", overview.posts_without_images, ""))
    parts = ['<section class="overview" aria-label="overview"><h2>The run at a glance</h2>']
    parts.append('<div class="figures">')
    for label, value, css in figures:
        parts.append(
            f'<div class="figure {css}"><span class="value">{value:,}</span>'
            f'<span class="label">{escape(label)}</span></div>'
        )
    parts.append(
        f'<div class="figure"><span class="value">{size(overview.stored_bytes)}</span>'
        '<span class="label">stored (duplicates not counted)</span></div>'
    )
    parts.append("</div>")
    for name, summary in overview.summaries:
        parts.append(_run_line(name, summary, len(overview.summaries) > 1))
    if overview.reasons:
        parts.append(_reasons_table(overview))
    for name, summary in overview.summaries:
        charts = timeline_series(summary.get("timeline"))
        if charts:
            if len(overview.summaries) > 1:
                parts.append(f"<h3>{escape(name)}</h3>")
            parts.append('<div class="charts">')
            parts.extend(line_chart(title, series) for title, series in charts.items())
            parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _run_line(name: str, summary: dict[str, Any], named: bool) -> str:
    """The last run's time, rate and bytes, from its summary."""
    done = sum(_num(summary.get(f"images/{status}")) for status in STATUSES)
    elapsed = _num(summary.get("elapsed_seconds"))
    text = []
    if elapsed:
        text.append(f"took {duration(elapsed)}, {done / elapsed:,.1f} images/s")
    text.append(f"{int(done):,} images")
    if downloaded := _num(summary.get("bytes")):
        text.append(f"{size(downloaded)} downloaded")
    if isinstance(reason := summary.get("finish_reason"), str) and reason != "finished":
        text.append(f"stopped: {reason}")
    prefix = f"{name}: " if named else "Last run: "
    return f'<p class="run-line">{escape(prefix + "; ".join(text))}</p>'


def _reasons_table(overview: Overview) -> str:
    parts = [
        '<table class="reasons"><thead><tr><th>failure</th><th>images</th>'
        "<th>what it means</th><th>pages</th></tr></thead><tbody>"
    ]
    for reason, count in overview.reasons.most_common():
        pages = overview.reason_pages.get(reason, [])
        fragment = "#" + escape(f"status=failed&reason={quote(reason)}")
        shown = pages[:LINKS_SHOWN]
        links = " ".join(f'<a href="{page_name(page)}{fragment}">{page}</a>' for page in shown)
        if len(pages) > LINKS_SHOWN:
            links += f" and {len(pages) - LINKS_SHOWN} more"
        parts.append(
            f'<tr><td><code>{escape(reason)}</code></td><td class="count">{count:,}</td>'
            f"<td>{escape(advice(reason))}</td><td>{links}</td></tr>"
        )
    parts.append("</tbody></table>")
    return "".join(parts)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
