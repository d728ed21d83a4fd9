"""vsekit serve in a real browser: headless Chromium (through Playwright, no browser download) drives the page of a
real ``vsekit serve f8k`` process.

An uploaded Flickr8K test photo must show the same top-3 captions as ``vsekit retrieve f8k --image PHOTO``, a
typed caption must show image cards whose thumbnails all load, and no result card overflows or overlaps another at
375, 800 and 1280 px. Needs Chromium, the shared Flickr8K images and the
vsekit-f8k and vsekit-efficientnet plugins: without one the test skips, except under ``CI=true``, where it fails.
The f8k caption bank is built on first use into the user's cache (about a minute once), as ``vsekit retrieve`` does.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, chromium
from layout_check import text_overlaps

from vsekit import retrieval, testing

TEXT = "a dog runs on the beach"


def needs() -> tuple[str, Path, Path]:
    """Chromium, the Flickr8K images folder and the first test photo; or skip / fail (CI)."""
    browser = chromium()
    data = testing.shared_data("flickr8k/images", "flickr8k/splits/test.txt")
    if "f8k" not in retrieval.installed_models():
        testing.missing_test_input("vsekit-f8k is not installed (pip install -e plugins/vsekit-f8k)")
    try:
        import vsekit_efficientnet  # noqa: F401
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError as exc:
        testing.missing_test_input(f"{exc.name} is not installed (pip install -e '.[test]' plugins/*)")
    images = data / "flickr8k" / "images"
    first = (data / "flickr8k" / "splits" / "test.txt").read_text().split()[0]
    return browser, images, images / first


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def cli_top3(photo: Path) -> list[str]:
    cmd = [sys.executable, "-m", "vsekit", "retrieve", "f8k", "--image", str(photo), "-k", "3", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [r["text"] for r in json.loads(proc.stdout)["results"]]


def wait_for_url(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    """The URL the server prints once it listens (``serving ... at URL``)."""
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline()
            seen += line
            if line.startswith("serving ") and " at http" in line:
                return line.split(" at ", 1)[1].split()[0]
        if proc.poll() is not None:
            break
    raise AssertionError(f"the server printed no URL: {seen[-2000:]} {log.read_text()[-2000:]}")


#: each card's box and whether its content is wider than it
CARD_BOXES = """cards => cards.map(c => { const r = c.getBoundingClientRect();
  return [r.left, r.top, r.right, r.bottom, c.scrollWidth > c.clientWidth + 1]; })"""


def no_overlap(boxes: list[list]) -> bool:
    """No card overflows sideways and no two cards' boxes intersect."""
    if any(b[4] for b in boxes):
        return False
    return not any(a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1
                   for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_page_shows_what_the_cli_finds(tmp_path):
    browser_path, images, photo = needs()
    from playwright.sync_api import expect, sync_playwright

    expected = cli_top3(photo)
    cmd = [sys.executable, "-m", "vsekit", "serve", "f8k", "--port", "0", "--images-dir", str(images)]
    log = tmp_path / "server.log"
    with log.open("w") as err:  # a file, not a pipe: a chatty server never blocks on it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env())
    try:
        url = wait_for_url(proc, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            page.locator("#status", has_text="Model ").wait_for()
            page.set_input_files("#photo", str(photo))
            page.locator("#captions li.card").nth(2).wait_for(timeout=60_000)
            shown = page.locator("#captions li.card p.text").all_text_contents()
            assert shown[:3] == expected

            page.fill("#text", TEXT)
            page.click("#text-form button")
            page.locator("#images li.card img").nth(4).wait_for(timeout=60_000)
            widths = []
            for img in page.locator("#images li.card img").all():
                expect(img).to_have_js_property("complete", True)
                widths.append(img.evaluate("i => i.naturalWidth"))
            assert len(widths) == 5 and all(w > 0 for w in widths), widths
            for width in (375, 800, 1280):
                page.set_viewport_size({"width": width, "height": 900})
                assert no_overlap(page.locator(".card").evaluate_all(CARD_BOXES)), width
                assert text_overlaps(page) == [], width  # the layout test's checker, on the live page
            browser.close()
        assert problems == [], problems  # no script error, no CSP violation
    finally:
        proc.terminate()
        proc.wait(timeout=30)
