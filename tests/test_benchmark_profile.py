"""benchmarks/cpu_profile.py gives each py-spy sample to the component it belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest

LOOP = (
    "_run_module_as_main (<frozen runpy>:198);<module> (scrapy/__main__.py:5);"
    "Command.run (igimages/commands/crawl.py:58);"
    "AsyncioSelectorReactor.run (twisted/internet/asyncioreactor.py:257);"
    "BaseEventLoop.run_forever (asyncio/base_events.py:607);Handle._run (asyncio/events.py:80)"
)
DOWNLOADED = (
    "MediaPipeline._check_media_to_download (scrapy/pipelines/media.py:250);"
    "PostImagesPipeline.media_downloaded (igimages/pipeline/post_images.py:240)"
)


@pytest.fixture(scope="module")
def cpu_profile():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
        import cpu_profile

        return cpu_profile


@pytest.mark.parametrize(
    ("inner", "expected"),
    [
        (
            f"{DOWNLOADED};inspect_image (igimages/validation.py:70);open (PIL/Image.py:3400)",
            "igimages: Pillow check",
        ),
        (f"{DOWNLOADED};describe (igimages/store/keeper.py:110)", "igimages: sha256"),
        (
            f"{DOWNLOADED};FolderStore.write (igimages/store/folder.py:120);"
            "__exit__ (contextlib.py:144)",
            "igimages: store, files",
        ),
        (
            f"{DOWNLOADED};FolderStore.save (igimages/store/folder.py:100);"
            "ImageIndex.record (igimages/store/index.py:90)",
            "igimages: store, index (SQLite)",
        ),
        (
            f"{DOWNLOADED};Request.__init__ (scrapy/http/request/__init__.py:90)",
            "igimages: pipeline, items, progress",
        ),
        (
            "Downloader._download (scrapy/core/downloader/__init__.py:250);"
            "ClientSession._request (aiohttp/client.py:700);__aenter__ (contextlib.py:210)",
            "aiohttp",
        ),
        (
            "Downloader._download (scrapy/core/downloader/__init__.py:250);"
            "make_response (scrapy/utils/_download_handlers.py:110)",
            "Scrapy: downloader, requests, responses",
        ),
        (
            "MediaPipeline._process_request (scrapy/pipelines/media.py:200)",
            "Scrapy: media pipeline",
        ),
        (
            "FeedExporter.item_scraped (scrapy/extensions/feedexport.py:500);"
            "dumps (json/__init__.py:231)",
            "feeds (manifest, failures)",
        ),
        (
            "_SelectorSocketTransport._read_ready (asyncio/selector_events.py:1000)",
            "event loop, sockets",
        ),
        (
            "Crawler._create_engine (scrapy/crawler.py:180);load_object (scrapy/utils/misc.py:60)",
            "start-up: settings, components, posts survey",
        ),
    ],
)
def test_a_sample_in_the_crawl_goes_to_its_innermost_known_part(cpu_profile, inner, expected):
    frames, count = cpu_profile.parse_stack(f"{LOOP};{inner} 7\n")
    assert count == 7
    assert cpu_profile.component(frames) == expected


def test_samples_outside_the_event_loop_are_start_up(cpu_profile):
    importing = (
        "_run_module_as_main (<frozen runpy>:198);"
        "_find_and_load (<frozen importlib._bootstrap>:1176);<module> (aiohttp/client.py:1)"
    )
    surveying = (
        "_run_module_as_main (<frozen runpy>:198);Command.run (igimages/commands/crawl.py:40);"
        "PostSource.survey (igimages/inputs/source.py:80)"
    )
    assert cpu_profile.component(cpu_profile.parse_stack(f"{importing} 1")[0]) == (
        "start-up: imports"
    )
    assert cpu_profile.component(cpu_profile.parse_stack(f"{surveying} 1")[0]) == (
        "start-up: settings, components, posts survey"
    )
