"""The HTML pages, rendered by headless Chromium: images load, captions and ground-truth marks show.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) or ``$VSEKIT_CHROMIUM``.
Without it the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vsekit import checkpoint, report, testing
from vsekit.cli import cli
from vsekit.retrieval import build_image_bank
from vsekit.retrieval_cli import add_commands

add_commands(cli)

APT = "apt-get install -y chromium"

#: appended to a copy of the page: after load, writes what the browser shows into the DOM
CHECK_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const out = {
    images: [...document.images].map(i => ({alt: i.alt, w: i.naturalWidth, h: i.naturalHeight,
                                             data: i.src.startsWith("data:")})),
    captions: [...document.querySelectorAll(".caption")].map(e => e.textContent),
    query_texts: [...document.querySelectorAll(".qtext")].map(e => e.textContent),
    gt: [...document.querySelectorAll("li.gt")].map(e => e.dataset.rank),
    placeholders: [...document.querySelectorAll(".noimg")].map(e => e.textContent),
    visible_width: document.querySelector("ol.results").getBoundingClientRect().width,
  };
  const pre = document.createElement("pre");
  pre.id = "vsekit-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in (os.environ.get("VSEKIT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)  # type: ignore[return-value]
    testing.missing_test_input(f"headless Chromium not found: `{APT}` (Debian) or set VSEKIT_CHROMIUM")


def run_chromium(page: Path, tmp_path: Path, *extra: str) -> str:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=5000", *extra, page.resolve().as_uri()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def rendered(page: Path, tmp_path: Path) -> dict:
    """What Chromium shows of ``page``: a copy beside it gets CHECK_SCRIPT; its report is read from --dump-dom."""
    probe = page.with_name(page.stem + ".probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    dom = run_chromium(probe, tmp_path, "--dump-dom")
    m = re.search(r'<pre id="vsekit-check">(.*?)</pre>', dom, re.S)
    assert m, f"the check script did not run; DOM starts: {dom[:500]}"
    return json.loads(html.unescape(m.group(1)))


def png(path: Path, w: int, h: int, rgb: tuple[int, int, int]) -> Path:
    """A solid-colour PNG, written without any imaging library."""
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def pictures(tmp_path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    png(folder / "red car.png", 40, 30, (220, 20, 20))
    png(folder / "blue_car.png", 30, 40, (20, 20, 220))
    png(folder / "red_dog.png", 20, 20, (200, 50, 50))
    return folder


@pytest.mark.parametrize("embed", [False, True], ids=["file-paths", "data-uris"])
def test_page_shows_images_captions_and_ground_truth(pictures, tmp_path, embed):
    out = tmp_path / "pages" / "page.html"  # another folder than the images: relative paths must climb out
    i2t = report.Query("image-to-text", [
        report.Result(1, 0.91, "a red car parked on a street", "red car.png", None, gt=True),
        report.Result(2, 0.55, "a blue car <b>not bold</b>", "blue_car.png"),
    ], id="red car.png", image=pictures / "red car.png", ground_truth=["a red car parked on a street"])
    t2i = report.Query("text-to-image", [
        report.Result(1, 0.8, None, "blue_car.png", pictures / "blue_car.png", gt=True),
        report.Result(2, 0.7, None, "red_dog.png", pictures / "red_dog.png"),
        report.Result(3, 0.1, None, "gone.jpg", None),
    ], text="a blue car")
    report.write_html(out, "test page", [i2t, t2i], embed_images=embed)
    src = out.read_text()
    assert ("data:image/" in src) == embed and "<script" not in src
    shown = rendered(out, tmp_path)
    assert len(shown["images"]) == 3
    assert all(i["w"] > 0 and i["h"] > 0 for i in shown["images"]), shown["images"]
    assert all(i["data"] == embed for i in shown["images"])
    assert shown["captions"] == ["a red car parked on a street", "a blue car <b>not bold</b>"]
    assert shown["query_texts"] == ["“a blue car”"]
    assert shown["gt"] == ["1", "1"] and shown["placeholders"] == ["gone.jpg"]
    assert shown["visible_width"] > 100


def test_broken_image_is_detected(tmp_path):
    """The probe is not vacuous: an image that does not load shows naturalWidth 0."""
    missing = tmp_path / "x.png"
    png(missing, 4, 4, (0, 0, 0))
    out = tmp_path / "page.html"
    report.write_html(out, "broken", [report.Query("text-to-image", [
        report.Result(1, 0.5, None, "x.png", missing)], text="q")])
    missing.write_bytes(b"not a png")
    shown = rendered(out, tmp_path)
    assert [i["w"] for i in shown["images"]] == [0]


def test_cli_html_page_and_screenshot(pictures, tmp_path):
    """`vsekit retrieve --html`: the page of a real query over an image bank of files."""
    import torch

    from vsekit.data.vocab import Vocab
    from vsekit.image.linear import LinearImageEncoder
    from vsekit.model import JointModel
    from vsekit.text.bow import BoWEncoder

    vocab = Vocab(["red", "blue", "car", "dog"])
    model = JointModel(BoWEncoder(BoWEncoder.Config(), len(vocab), 4),
                       LinearImageEncoder(LinearImageEncoder.Config(), 4, 4), vocab).eval()
    with torch.no_grad():
        model.sentence_encoder.embed.weight.zero_()
        for axis, word in enumerate(["red", "blue", "car", "dog"]):
            model.sentence_encoder.embed.weight[vocab.index[word], axis] = 1.0
        model.image_encoder.fc.weight.copy_(torch.eye(4))
    spec = {"model": {"dim": 4, "sentence_encoder": {"type": "bow"}, "image_encoder": {"type": "linear"}}}
    checkpoint.save(tmp_path / "toy", "best", model, spec)
    feats = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]], np.float32)
    build_image_bank(model, feats, ["red car.png", "blue_car.png", "red_dog.png"],
                     image_root=pictures).save(tmp_path / "bank")
    page = tmp_path / "out" / "result.html"
    res = CliRunner().invoke(cli, ["retrieve", str(tmp_path / "toy"), "--text", "red red car", "--bank",
                                   str(tmp_path / "bank"), "-k", "3", "--html", str(page)], obj={})
    assert res.exit_code == 0, res.output
    shown = rendered(page, tmp_path)
    assert [i["alt"] for i in shown["images"]] == ["red car.png", "red_dog.png", "blue_car.png"]
    assert all(i["w"] > 0 for i in shown["images"])
    assert shown["query_texts"] == ["“red red car”"]
    shot = tmp_path / "shot.png"
    run_chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=800,600")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and struct.unpack(">II", data[16:24]) == (800, 600)
