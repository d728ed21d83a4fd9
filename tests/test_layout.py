"""Every page kind, rendered by headless Chromium (Playwright) at 375, 800 and 1280 px: no text of one card
is drawn over another card's text (file names over the next card's score, captions over captions).

Needs Debian's ``chromium`` or ``$VSEKIT_CHROMIUM``; without it the tests skip, except under ``CI=true``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import chromium, write_precomp
from layout_check import overlaps_at_widths
from test_html import png, toy_run

from vsekit import checkpoint, testing
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
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # skips here, fails under CI=true
        testing.missing_test_input("playwright is not installed: pip install playwright (no browser download)")
    with sync_playwright() as p:
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
    out["compare"] = compare_page(tmp)
    return out


def fake_run(folder: Path, rsum: float, n_images: int = 1000, seed: int = 0) -> dict:
    """A finished run's results.json and metrics.jsonl, written directly (compare only reads them)."""
    folder.mkdir(parents=True)
    protocol = {"ties": "pessimistic", "folds": 1, "caps_per_image_eval": 5, "n_images": n_images,
                "n_captions_eval": 5 * n_images}
    metrics = {c: rsum / 6 for c in ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")}
    res = {"name": folder.name, "seed": seed, "run_dir": str(folder), "test": {"split": "test", **metrics, "rsum": rsum,
           "i2t_medr": 12.0, "t2i_medr": 11.0, "protocol": protocol},
           "valid": {"split": "dev", **metrics, "rsum": rsum - 3, "i2t_medr": 13.0, "t2i_medr": 12.0,
                     "protocol": protocol}}
    (folder / "results.json").write_text(json.dumps(res))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"event": "valid", "step": s, "rsum": rsum * s / 3000})
                                                  + "\n" for s in range(500, 3001, 500)))
    return res


def compare_page(tmp: Path) -> Path:
    """``vsekit compare`` over a run, a seeds folder and a run on another split size, with long names."""
    long = "flickr8k_gru_infonce_dim1024_lr2e-4_then_maxviolation_warmup"
    fake_run(tmp / "cmp" / long, 180.5)
    seeds = [fake_run(tmp / "cmp" / f"{long}_seeds" / f"seed{k}", 170.0 + k, seed=k) for k in range(3)]
    (tmp / "cmp" / f"{long}_seeds" / "summary.json").write_text(json.dumps({"name": long, "seeds": [0, 1, 2],
                                                                             "runs": seeds}))
    fake_run(tmp / "cmp" / "bow_5k_test", 150.25, n_images=5000)
    res = CliRunner().invoke(cli, ["compare", *(str(tmp / "cmp" / n) for n in (long, f"{long}_seeds", "bow_5k_test")),
                                   "-o", str(tmp / "cmp" / "out")], obj={})
    assert res.exit_code == 0, res.output
    return tmp / "cmp" / "out" / "compare.html"


KINDS = ["text-to-image", "text-to-image-no-images", "image-to-text", "arithmetic", "gallery", "gallery-no-images",
         "compare"]


@pytest.mark.parametrize("kind", KINDS)
def test_no_card_text_overlaps_another_card(browser, pages, kind):
    problems = overlaps_at_widths(browser, pages[kind].resolve().as_uri())
    assert not problems, f"{kind}: {len(problems)} overlaps:\n" + "\n".join(problems[:15])
