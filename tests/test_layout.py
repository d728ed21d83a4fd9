"""Every page kind, rendered by headless Chromium (Playwright) at 375, 800 and 1280 px: no text of one card
is drawn over another card's text (file names over the next card's score, captions over captions).

Needs Debian's ``chromium`` or ``$VSEKIT_CHROMIUM``; without it the tests skip, except under ``CI=true``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_precomp
from layout_check import chromium, overlaps_at_widths
from test_html import png, toy_run

from vsekit import checkpoint
from vsekit.cli import cli
from vsekit.cli.retrieval import add_commands
from vsekit.retrieval import build_image_bank

add_commands(cli)

#: Flickr8K-like ids: long, no break opportunity but the underscore
IDS = ["1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg", "1002674143_1b742ab4b8.jpg",
       "1003163366_44323f5815.jpg", "1007129816_e794419615.jpg", "1007320043_627395c3d8.jpg"]
CAPTIONS = ["a red car parked beside a very long brick wall on a narrow street in the old town",
            "a blue car", "red dog", "a_very_long_unbroken_caption_token_that_never_wraps_anywhere_at_all red",
            "two dogs playing in the snow near a red car", "a car"]
FEATS = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0]], np.float32)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """Every static page kind, over a toy model, with and without image files."""
    tmp = tmp_path_factory.mktemp("layout")
    run = toy_run(tmp)
    pics = tmp / "pics"
    pics.mkdir()
    for i, name in enumerate(IDS):
        png(pics / name, 60 + 10 * i, 40, (200, 30 * i, 0))
    model = checkpoint.load(run)[0]
    build_image_bank(model, FEATS, IDS, image_root=pics).save(tmp / "imbank")
    build_image_bank(model, FEATS, IDS).save(tmp / "imbank-nopics")
    caps = tmp / "caps.csv"
    caps.write_text("image,caption\n" + "".join(f"{IDS[i % 6]},{c}\n" for i, c in enumerate(CAPTIONS * 2)))
    res = CliRunner().invoke(cli, ["bank", str(run), "--captions", str(caps), "-o", str(tmp / "capbank")], obj={})
    assert res.exit_code == 0, res.output
    np.save(tmp / "query.npy", FEATS)
    out: dict[str, Path] = {}
    queries = {
        "text-to-image": ["--text", "red car", "--bank", str(tmp / "imbank")],
        "text-to-image-no-images": ["--text", "red car", "--bank", str(tmp / "imbank-nopics")],
        "image-to-text": ["--features", str(tmp / "query.npy"), "--row", "0", "--bank", str(tmp / "capbank")],
        "arithmetic": ["--text", "blue car", "--minus", "blue", "--plus", "red", "--bank", str(tmp / "imbank")],
    }
    for kind, args in queries.items():
        out[kind] = tmp / "pages" / f"{kind}.html"
        res = CliRunner().invoke(cli, ["retrieve", str(run), *args, "-k", "6", "--html", str(out[kind])], obj={})
        assert res.exit_code == 0, res.output
    data = tmp / "data"
    for split in ("train", "dev", "test"):
        write_precomp(data, split, [CAPTIONS[(i + j) % 6] for i in range(6) for j in range(5)], FEATS)
        (data / f"{split}_ids.txt").write_text("".join(i + "\n" for i in IDS), encoding="utf-8")
    run2 = toy_run(tmp / "r2", data={"type": "precomp", "dir": str(data)})
    for name, extra in (("gallery", ["--images-dir", str(pics)]), ("gallery-no-images", [])):
        res = CliRunner().invoke(cli, ["report", str(run2), "-o", str(tmp / name), "-n", "6", "-k", "6", *extra],
                                 obj={})
        assert res.exit_code == 0, res.output
        out[name] = tmp / name / "gallery.html"
    return out


KINDS = ["text-to-image", "text-to-image-no-images", "image-to-text", "arithmetic", "gallery", "gallery-no-images"]


@pytest.mark.parametrize("kind", KINDS)
def test_no_card_text_overlaps_another_card(browser, pages, kind):
    problems = overlaps_at_widths(browser, pages[kind].resolve().as_uri())
    assert not problems, f"{kind}: {len(problems)} overlaps:\n" + "\n".join(problems[:15])
