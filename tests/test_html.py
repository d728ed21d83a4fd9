"""The HTML pages, rendered by headless Chromium: images load, captions and ground-truth marks show.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) or ``$VSEKIT_CHROMIUM``.
Without it the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import html
import html.parser
import json
import re
import struct
import subprocess
import urllib.parse
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import chromium, write_precomp

from vsekit import checkpoint, report
from vsekit.cli import cli
from vsekit.cli.retrieval import add_commands
from vsekit.data.files import ENV_IMAGES
from vsekit.report.pages import DEFAULT_IMAGE_HINT
from vsekit.retrieval import build_image_bank

add_commands(cli)

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
    placeholders: [...document.querySelectorAll(".noimg .noimg-id")].map(e => e.textContent),
    hints: [...document.querySelectorAll(".noimg .hint")].map(e => e.textContent),
    visible_width: document.querySelector("ol.results").getBoundingClientRect().width,
  };
  const pre = document.createElement("pre");
  pre.id = "vsekit-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


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
    assert shown["hints"] == [DEFAULT_IMAGE_HINT]  # a card without its picture says so
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
    model = toy_model()
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


# --------------------------------------------------------------------------
# static pages have no script: hostile captions, ids, file and folder names on every page kind

HOSTILE = [
    "<script>alert(1)</script>",
    "<ScRiPt src=//evil.example/x.js></sCrIpT>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(2)",
    "<svg/onload=alert(3)>",
    "<IMG SRC=javascript:alert(4) OnErRoR=alert(5)>",
    "</title><script>alert(6)</script>",
    "<!--",
]
# file and folder names cannot hold "/": these keep the attack without one
HOSTILE_NAMES = ['"><img src=x onerror=alert(1)>', "<ScRiPt>alert(1)<!--", "x' OnMouseOver='alert(2)",
                 "javascript:alert(3)"]


class _Page(html.parser.HTMLParser):
    """Every tag and attribute a browser would build from the page, and its text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)

    def handle_comment(self, data):
        raise AssertionError(f"a comment opened in the page: {data[:80]!r}")


SAFE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "p", "section", "div", "ol", "ul", "li", "span",
             "img", "details", "summary"}


def assert_static(page: Path, *shown: str) -> str:
    """No script anywhere (case-insensitive), no event-handler or javascript: attribute, and every hostile
    string shown as text (escaped, not dropped)."""
    src = page.read_text(encoding="utf-8")
    low = src.lower()
    assert "<script" not in low, page
    bare = re.sub(r'"[^"]*"', '""', low)  # every attribute value is double-quoted: what is left is markup
    for tag in re.findall(r"<[^>]*>", bare):
        assert not re.search(r"[\s/'\"]on[a-z]+\s*=", tag), tag
    parsed = _Page()
    parsed.feed(src)
    parsed.close()
    tags = {t for t, _ in parsed.tags}
    assert tags <= SAFE_TAGS, tags - SAFE_TAGS
    for tag, attrs in parsed.tags:
        for name, value in attrs:
            assert not name.lower().startswith("on"), (tag, name, value)
            v = (value or "").strip().lower()
            if name in ("src", "href", "action", "formaction", "data", "srcset", "poster"):  # URLs: a file or data
                assert v.startswith(("data:image/", "file:")) or ":" not in v.split("/", 1)[0], (tag, name, value)
    text = "".join(parsed.text)
    for s in shown:
        assert s in text or any(s in (v or "") for _, a in parsed.tags for _, v in a), (s, text[:2000])
    return src


@pytest.mark.parametrize("embed", [False, True], ids=["file-paths", "data-uris"])
def test_write_html_escapes_hostile_text_and_names(tmp_path, embed):
    folder = tmp_path / HOSTILE_NAMES[0]
    folder.mkdir()
    files = [png(folder / f"{n}.png", 4, 4, (10 * i, 0, 0)) for i, n in enumerate(HOSTILE_NAMES)]
    results = [report.Result(i + 1, 0.5, cap, f"{HOSTILE_NAMES[i % 4]}.png", files[i % 4], gt=i == 0)
               for i, cap in enumerate(HOSTILE)]
    queries = [
        report.Query("image-to-text", results, id=HOSTILE_NAMES[1], image=files[1], ground_truth=HOSTILE[:3],
                     note=HOSTILE[6]),
        report.Query("text-to-image", [report.Result(1, 0.1, None, HOSTILE_NAMES[2], files[2])], text=HOSTILE[2],
                     id=HOSTILE[3]),
        report.Query(HOSTILE[2], [], text=HOSTILE[0]),  # even the kind lands in an attribute
    ]
    (tmp_path / "pages").mkdir()
    beside = png(tmp_path / "pages" / "javascript:alert(7).png", 4, 4, (0, 0, 9))  # a relative src that looks a URL
    queries.append(report.Query("text-to-image", [report.Result(1, 0.2, None, beside.name, beside)], text="q"))
    page = report.write_html(tmp_path / "pages" / "page.html", HOSTILE[6], queries, embed_images=embed,
                             intro=HOSTILE)
    assert_static(page, *HOSTILE)


def toy_model():
    """A 4-word, 4-d bag-of-words model: word k is axis k ("red", "blue", "car", "dog"), images map to themselves."""
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
    return model


def toy_run(tmp_path: Path, name: str = "toy", data: dict | None = None) -> Path:
    """The 4-word, 4-d bag-of-words model of :func:`toy_model`, saved as a run folder."""
    model = toy_model()
    spec = {"name": name, "model": {"dim": 4, "sentence_encoder": {"type": "bow"}, "image_encoder": {"type": "linear"}},
            "loss": {"type": "infonce"}, **({"data": data} if data else {})}
    run = tmp_path / "toy"
    checkpoint.save(run, "best", model, spec)
    return run


def test_retrieve_html_escapes_hostile_captions_ids_and_file_names(tmp_path):
    run = toy_run(tmp_path)
    pics = tmp_path / "pics"
    pics.mkdir()
    ids = [f"{n} red car.png" for n in HOSTILE_NAMES]
    for i, name in enumerate(ids):
        png(pics / name, 4, 4, (200, 10 * i, 0))
    feats = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1]], np.float32)
    build_image_bank(checkpoint.load(run)[0], feats, ids, image_root=pics).save(tmp_path / HOSTILE_NAMES[0])
    caps = tmp_path / "caps.csv"
    caps.write_text("image,caption\n" + "".join(f'"{ids[i % 4].replace(chr(34), 2 * chr(34))}",'
                                                f'"red car {c.replace(chr(34), 2 * chr(34))}"\n'
                                                for i, c in enumerate(HOSTILE)), encoding="utf-8")
    res = CliRunner().invoke(cli, ["bank", str(run), "--captions", str(caps), "-o", str(tmp_path / "capbank")], obj={})
    assert res.exit_code == 0, res.output
    qfile = tmp_path / f"{HOSTILE_NAMES[1]}.npy"
    np.save(qfile, feats)
    pages = {
        "text-to-image": ["--text", f"red car {HOSTILE[0]} {HOSTILE[2]}", "--bank", str(tmp_path / HOSTILE_NAMES[0])],
        "image-to-text": ["--features", str(qfile), "--row", "0", "--bank", str(tmp_path / "capbank")],
    }
    for kind, args in pages.items():
        for embed in ([], ["--embed-images"]):
            page = tmp_path / HOSTILE_NAMES[2] / f"{kind}{len(embed)}.html"
            res = CliRunner().invoke(cli, ["retrieve", str(run), *args, "-k", "4", "--html", str(page), *embed],
                                     obj={})
            assert res.exit_code == 0, res.output
            src = assert_static(page)
            shown = [s for s in HOSTILE + HOSTILE_NAMES if html.escape(s) in src]
            assert len(shown) >= 4, (kind, shown)  # the hostile strings are on the page, escaped


def test_report_gallery_escapes_hostile_captions_ids_and_file_names(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ids = [f"{n}.png" for n in HOSTILE_NAMES]
    caps = [f"red car {HOSTILE[(5 * i + j) % len(HOSTILE)]}" for i in range(4) for j in range(5)]
    feats = np.array([[1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 1, 1]], np.float32)
    for split in ("train", "dev", "test"):
        write_precomp(data_dir, split, caps, feats)
        (data_dir / f"{split}_ids.txt").write_text("".join(i + "\n" for i in ids), encoding="utf-8")
    pics = tmp_path / "pics"
    pics.mkdir()
    for i, name in enumerate(ids):
        png(pics / name, 4, 4, (0, 50 * i, 0))
    run = toy_run(tmp_path, name=HOSTILE[6], data={"type": "precomp", "dir": str(data_dir)})
    (run / "metrics.jsonl").write_text('{"event": "' + HOSTILE[0].replace('"', '\\"') + '"}\n', encoding="utf-8")
    for embed in ([], ["--embed-images"]):
        out = tmp_path / f"{HOSTILE_NAMES[0]}{len(embed)}"
        res = CliRunner().invoke(cli, ["report", str(run), "-o", str(out), "-n", "4", "-k", "5", "--images-dir",
                                       str(pics), *embed], obj={})
        assert res.exit_code == 0, res.output
        src = assert_static(out / "gallery.html", HOSTILE[6])
        assert sum(html.escape(c) in src for c in set(caps)) >= 4 and sum(html.escape(i) in src for i in ids) >= 2


def test_pictures_come_from_images_dir_or_the_variable_else_each_card_says_how(pictures, tmp_path, monkeypatch):
    """No bank records where its images are: without --images-dir or $VSEKIT_F8K_IMAGES each card names both;
    with either, the page references the user's own files by relative path (nothing copied)."""
    model = toy_model()
    spec = {"model": {"dim": 4, "sentence_encoder": {"type": "bow"}, "image_encoder": {"type": "linear"}}}
    checkpoint.save(tmp_path / "toy", "best", model, spec)
    ids = ["red car.png", "blue_car.png", "red_dog.png"]
    build_image_bank(model, np.eye(4, dtype=np.float32)[:3], ids).save(tmp_path / "bank")
    monkeypatch.delenv(ENV_IMAGES, raising=False)

    def page(*extra: str) -> str:
        out = tmp_path / "out" / "page.html"
        res = CliRunner().invoke(cli, ["retrieve", str(tmp_path / "toy"), "--text", "red car", "--bank",
                                       str(tmp_path / "bank"), "-k", "3", "--html", str(out), *extra], obj={})
        assert res.exit_code == 0, res.output
        return out.read_text()

    bare = page()
    assert "<img" not in bare and bare.count('class="hint"') == 3
    assert bare.count(html.escape(f"pass --images-dir DIR or set {ENV_IMAGES}")) == 3
    for extra, env in (([], str(pictures)), (["--images-dir", str(pictures)], None)):
        if env:
            monkeypatch.setenv(ENV_IMAGES, env)
        else:
            monkeypatch.delenv(ENV_IMAGES)
        src = re.findall(r'<img class="small result-image" src="([^"]+)"', page(*extra))
        assert sorted(src) == sorted(f"../pictures/{urllib.parse.quote(i)}" for i in ids)
