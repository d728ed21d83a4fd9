"""vsekit serve: every endpoint and its errors through Starlette's TestClient, the page's headers, thumbnails that
never leave their folder, the upload limit, the photos' cached bank, and the command's refusals.

The model is a toy whose words are axes (red e0, blue e1, car e2, dog e3), so every expected ranking follows from
geometry: the stand-in extractor ``toy_color`` gives a photo the features [mean red, mean blue, landscape,
portrait] (0/1 each), and the identity image encoder keeps them.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch
from bad_input_harness import cases, check_case
from PIL import Image
from starlette.testclient import TestClient  # the test extra installs the serve extra

from vsekit import checkpoint, retrieval, testing
from vsekit.data.vocab import Vocab
from vsekit.errors import DataError
from vsekit.image.base import Extracted, ImageFeatureExtractor
from vsekit.image.linear import LinearImageEncoder
from vsekit.model import JointModel, encode_images, encode_sentences
from vsekit.serve.app import CSP, create_app
from vsekit.serve.photos import photo_bank
from vsekit.serve.uploads import Limits
from vsekit.text.bow import BoWEncoder

WORDS = ["red", "blue", "car", "dog"]
IMAGES = {"red_car.png": [1, 0, 1, 0], "blue_car.png": [0, 1, 1, 0], "red_dog.png": [1, 0, 0, 1],
          "blue_dog.png": [0, 1, 0, 1]}
CAPTIONS = ["red car", "blue car", "red dog", "blue dog"]


class ToyColor(ImageFeatureExtractor):
    """[mean red, mean blue, landscape, portrait] of an image file, each rounded to 0/1."""

    @attrs.frozen
    class Config:
        pass

    def extract(self, paths):
        rows, ok, errors = [], [], {}
        for p in paths:
            try:
                with Image.open(p) as im:
                    a = np.asarray(im.convert("RGB"), np.float32) / 255
                    w, h = im.size
            except Exception as exc:
                ok.append(False)
                errors[Path(p).name] = f"unreadable: {exc}"
                continue
            rows.append([round(a[..., 0].mean()), round(a[..., 2].mean()), float(w >= h), float(h > w)])
            ok.append(True)
        return Extracted(np.array(rows, np.float32).reshape(len(rows), 4), np.array(ok), errors)


def toy_model() -> JointModel:
    vocab = Vocab(WORDS)
    senc = BoWEncoder(BoWEncoder.Config(), len(vocab), 4)
    ienc = LinearImageEncoder(LinearImageEncoder.Config(), 4, 4)
    with torch.no_grad():
        senc.embed.weight.zero_()
        for axis, word in enumerate(WORDS):
            senc.embed.weight[vocab.index[word], axis] = 1.0
        ienc.fc.weight.copy_(torch.eye(4))
        ienc.fc.bias.zero_()
    return JointModel(senc, ienc, vocab).eval()


def png(color: tuple[int, int, int], size: tuple[int, int] = (8, 4), orientation: int | None = None) -> bytes:
    im = Image.new("RGB", size, color)
    buf = io.BytesIO()
    if orientation is None:
        im.save(buf, format="PNG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


RED, BLUE = (250, 0, 0), (0, 0, 250)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The toy checkpoint, its caption and image banks, an images folder with the four images, and a secret file
    beside that folder (which a bank id ``../secret.png`` names)."""
    root = tmp_path_factory.mktemp("serve")
    model = toy_model()
    spec = {"name": "toy",
            "model": {"dim": 4, "sentence_encoder": {"type": "bow"}, "image_encoder": {"type": "linear"}}}
    checkpoint.save(root / "toy", "best", model, spec)
    images = root / "images"
    images.mkdir()
    for name, (r, b, land, _) in IMAGES.items():
        (images / name).write_bytes(png((250 * r, 0, 250 * b), (8, 4) if land else (4, 8)))
    (root / "secret.png").write_bytes(png(RED))
    loaded, _, _ = retrieval.open_model(root / "toy")
    feats = np.array(list(IMAGES.values()), np.float32)
    secret = np.array([[0.1, 0, 0, 1]], np.float32)  # last for every query of the tests
    retrieval.build_image_bank(loaded, np.vstack([feats, secret]), [*IMAGES, "../secret.png"],
                               dtype="float32").save(root / "ibank")
    retrieval.build_caption_bank(loaded, CAPTIONS, list(IMAGES), dtype="float32").save(root / "cbank")
    return root


@pytest.fixture(scope="module")
def registered_extractor():
    with testing.registered("image_feature_extractor", "toy_color", ToyColor):
        yield


def make_client(toy, images_dir=True, extractor="toy_color", **limits):
    r = retrieval.Retriever.load(toy / "toy", caption_bank=toy / "cbank", image_bank=toy / "ibank",
                                 extractor=extractor)
    app = create_app(r, images_dir=toy / "images" if images_dir else None, limits=Limits(**limits))
    return TestClient(app)


@pytest.fixture(scope="module")
def client(toy, registered_extractor):
    with make_client(toy) as c:
        yield c


def ids(resp):
    assert resp.status_code == 200, resp.text
    return [r["id"] for r in resp.json()["results"]]


# ----------------------------------------------------------------------------------------------- the endpoints


def test_captions_for_an_image(client):
    resp = client.post("/api/captions", files={"image": ("red.png", png(RED))}, data={"k": "4"})
    body = resp.json()
    texts = [r["text"] for r in body["results"]]
    assert texts[0] == "red car" and texts[3] == "blue dog"  # red landscape: red + car; nothing in common
    assert body["search"] == "captions" and body["bank_size"] == 4 and body["query"] == {"image": "red.png", "k": 4}
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)  # the very same direction
    assert body["results"][0]["thumb"] == "/thumbs/red_car.png"


def test_exif_orientation_is_applied(client):
    turned = png(BLUE, (8, 4), orientation=6)  # stored landscape, shown portrait
    resp = client.post("/api/captions", files={"image": ("b.jpg", turned)}, data={"k": "1"})
    assert resp.json()["results"][0]["text"] == "blue dog"
    plain = png(BLUE, (8, 4), orientation=1)
    assert client.post("/api/captions", files={"image": ("b.jpg", plain)}, data={"k": "1"}).json()[
        "results"][0]["text"] == "blue car"


def test_images_for_a_text_json_and_form(client):
    assert ids(client.post("/api/images", json={"text": "blue dog", "k": 2}))[0] == "blue_dog.png"
    assert ids(client.post("/api/images", data={"text": "red car", "k": "1"})) == ["red_car.png"]
    assert len(ids(client.post("/api/images", json={"text": "dog"}))) == 5  # default k, whole bank


def test_arithmetic(client):
    resp = client.post("/api/arithmetic", files={"image": ("red.png", png(RED))},
                       data={"minus": "red", "plus": "blue", "k": "1"})
    assert ids(resp) == ["blue_car.png"]
    assert resp.json()["query"]["minus"] == ["red"] and resp.json()["query"]["plus"] == ["blue"]
    resp = client.post("/api/arithmetic", files={"image": ("red.png", png(RED))},
                       data={"minus": "car", "plus": "dog, blue", "k": "1"})  # commas split words
    assert ids(resp) == ["blue_dog.png"]


def test_encode_texts_and_image(client):
    model = toy_model()
    body = client.post("/api/encode", json={"texts": ["red car", "dog"]}).json()
    expected = encode_sentences(model, ["red car", "dog"])
    assert body["kind"] == "texts" and body["dim"] == 4 and body["count"] == 2 and body["unreadable"] == []
    np.testing.assert_allclose(np.array(body["vectors"]), expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(body["vectors"], axis=1), 1.0, atol=1e-6)
    body = client.post("/api/encode", files={"image": ("blue.png", png(BLUE, (4, 8)))}).json()
    assert body["kind"] == "image" and body["count"] == 1
    np.testing.assert_allclose(body["vectors"][0], encode_images(model, np.array([[0, 1, 0, 1]], np.float32))[0],
                               atol=1e-6)


def test_info(client):
    body = client.get("/api/info").json()
    assert body["captions"]["size"] == 4 and body["images"]["size"] == 5 and body["dim"] == 4
    assert body["image_queries"] is True and body["thumbnails"] is True
    assert body["limits"]["max_upload_bytes"] == Limits().max_upload_bytes


# ----------------------------------------------------------------------------------------------- bad requests

BAD = [
    ("captions: no image field", "/api/captions", {"data": {"k": "1"}}, 400, "missing field 'image'"),
    ("captions: image sent as text", "/api/captions", {"data": {"image": "x.png"}}, 400, "must be a file upload"),
    ("captions: not an image", "/api/captions", {"files": {"image": ("a.txt", b"hello there")}}, 415, "not an image"),
    ("captions: empty upload", "/api/captions", {"files": {"image": ("e.png", b"")}}, 400, "empty"),
    ("captions: truncated", "/api/captions", {"files": {"image": ("t.png", png(RED)[:60])}}, 400, "t.png"),
    ("captions: k zero", "/api/captions", {"files": {"image": ("r.png", png(RED))}, "data": {"k": "0"}}, 400,
     "k must be from 1 to 100"),
    ("captions: k too big", "/api/captions", {"files": {"image": ("r.png", png(RED))}, "data": {"k": "101"}}, 400,
     "k must be from 1 to 100"),
    ("captions: k not a number", "/api/captions", {"files": {"image": ("r.png", png(RED))}, "data": {"k": "2x"}},
     400, "whole number"),
    ("captions: plain text body", "/api/captions", {"content": b"hi", "headers": {"content-type": "text/plain"}},
     415, "multipart/form-data"),
    ("images: missing text", "/api/images", {"json": {"k": 2}}, 400, "missing field 'text'"),
    ("images: empty text", "/api/images", {"json": {"text": "   "}}, 400, "empty"),
    ("images: too long text", "/api/images", {"json": {"text": "red " * 200}}, 400, "too long"),
    ("images: text not a string", "/api/images", {"json": {"text": ["red"]}}, 400, "must be a string"),
    ("images: no known word", "/api/images", {"json": {"text": "zebra"}}, 400, "vocabulary"),
    ("images: k a float", "/api/images", {"json": {"text": "red", "k": 2.5}}, 400, "whole number"),
    ("images: bad JSON", "/api/images", {"content": b"{", "headers": {"content-type": "application/json"}}, 400,
     "not valid JSON"),
    ("images: JSON list", "/api/images", {"json": ["red"]}, 400, "must be an object"),
    ("arithmetic: no words", "/api/arithmetic", {"files": {"image": ("r.png", png(RED))}}, 400, "at least one word"),
    ("arithmetic: unknown word", "/api/arithmetic", {"files": {"image": ("r.png", png(RED))},
                                                     "data": {"plus": "zebra"}}, 400, "arithmetic word 'zebra'"),
    ("arithmetic: too many words", "/api/arithmetic", {"files": {"image": ("r.png", png(RED))},
                                                       "data": {"plus": ",".join(["red"] * 9)}}, 400, "at most 8"),
    ("encode: nothing", "/api/encode", {"json": {}}, 400, "missing field 'texts'"),
    ("encode: no texts", "/api/encode", {"json": {"texts": []}}, 400, "field 'texts' is empty"),
    ("encode: too many texts", "/api/encode", {"json": {"texts": ["red"] * 65}}, 400, "at most 64"),
    ("encode: an empty text", "/api/encode", {"json": {"texts": ["red", ""]}}, 400, "texts[1]"),
]


@pytest.mark.parametrize(("path", "kwargs", "status", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_json_error(client, path, kwargs, status, needle):
    resp = client.post(path, **kwargs)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and needle in body["error"], body
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert ids(client.post("/api/images", json={"text": "red car", "k": 1})) == ["red_car.png"]  # unharmed


def test_wrong_method_and_unknown_path_are_json(client):
    resp = client.get("/api/captions")
    assert resp.status_code == 405 and resp.json()["status"] == 405
    resp = client.get("/api/nothing")
    assert resp.status_code == 404 and resp.json()["status"] == 404


def test_upload_size_limit(toy, registered_extractor):
    big = png(RED, (300, 200)) + b"\0" * 3000  # a valid PNG with trailing bytes: only the size is wrong
    with make_client(toy, max_upload_bytes=2000) as c:
        resp = c.post("/api/captions", files={"image": ("big.png", big)})
        assert resp.status_code == 413 and "at most" in resp.json()["error"]

        def chunks():  # no Content-Length: the limit must hold while the body is read
            yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
            for _ in range(10):
                yield b"\0" * 500

        resp = c.post("/api/captions", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert resp.status_code == 413, resp.text
        assert c.post("/api/captions", files={"image": ("s.png", png(RED))}, data={"k": "1"}).status_code == 200


# ----------------------------------------------------------------------------------------------- page and files


def test_page_headers_and_no_inline_script(client):
    resp = client.get("/")
    assert resp.status_code == 200 and resp.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "default-src 'self'" in CSP and "unsafe" not in CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    html = resp.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs_ and not body.strip() for attrs_, body in scripts)
    assert not re.search(r"\son[a-z]+=", html) and "http://" not in html and "https://" not in html
    assert 'class="card' not in html  # cards come from the script
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["x-content-type-options"] == "nosniff"
    assert "innerHTML" not in js.text and "http" not in js.text.replace("/api/", "")
    assert "--images-dir" in js.text  # what an image card says without images
    for path in ("/api/info", "/thumbs/red_car.png"):
        assert client.get(path).headers["content-security-policy"] == CSP


def test_thumbnails(client, toy):
    resp = client.get("/thumbs/red_car.png")
    assert resp.status_code == 200 and resp.content == (toy / "images" / "red_car.png").read_bytes()
    for bad in ("/thumbs/../../etc/passwd", "/thumbs/..%2F..%2Fetc%2Fpasswd", "/thumbs//etc/passwd",
                "/thumbs/%2Fetc%2Fpasswd", "/thumbs/..%2Fsecret.png", "/thumbs/nothing.png", "/thumbs/toy"):
        resp = client.get(bad)
        assert resp.status_code == 404 and resp.json()["status"] == 404, bad
    # ../secret.png is an id of the image bank, but its file lies outside the images folder: no thumbnail
    assert all(r["thumb"] is None for r in client.post("/api/images", json={"text": "red car", "k": 5}).json()[
        "results"] if r["id"] == "../secret.png")


def test_without_images_dir_cards_have_no_thumbnails(toy, registered_extractor):
    with make_client(toy, images_dir=False) as c:
        body = c.post("/api/images", json={"text": "red", "k": 4}).json()
        assert [r["thumb"] for r in body["results"]] == [None] * 4
        assert c.get("/thumbs/red_car.png").status_code == 404
        assert c.get("/api/info").json()["thumbnails"] is False


def test_without_an_extractor_image_queries_are_503_and_text_queries_work(toy):
    with make_client(toy, extractor=None) as c:  # the toy checkpoint records no image feature extractor
        info = c.get("/api/info").json()
        assert info["image_queries"] is False and "--extractor" in info["image_problem"]
        resp = c.post("/api/captions", files={"image": ("r.png", png(RED))})
        assert resp.status_code == 503 and "image queries are off" in resp.json()["error"]
        assert ids(c.post("/api/images", json={"text": "blue car", "k": 1})) == ["blue_car.png"]


def test_photo_bank_is_built_once_and_cached(toy, registered_extractor, tmp_path, monkeypatch):
    monkeypatch.setenv(retrieval.ENV_CACHE, str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "mine_red.png").write_bytes(png(RED))
    (photos / "mine_blue.png").write_bytes(png(BLUE, (4, 8)))
    r = retrieval.Retriever.load(toy / "toy", caption_bank=toy / "cbank", extractor="toy_color")
    bank = photo_bank(r, toy / "toy", photos, "toy_color")
    assert sorted(bank.ids) == ["mine_blue.png", "mine_red.png"] and bank.path.parent == tmp_path / "cache" / "banks"
    calls = []
    monkeypatch.setattr("vsekit.serve.photos.make_bank", lambda *a, **k: calls.append(a))
    assert photo_bank(r, toy / "toy", photos, "toy_color").path == bank.path and calls == []
    with TestClient(create_app(r, image_bank=bank)) as c:
        assert ids(c.post("/api/images", json={"text": "blue dog", "k": 1})) == ["mine_blue.png"]
        assert c.get("/thumbs/mine_blue.png").content == (photos / "mine_blue.png").read_bytes()
        assert c.get("/thumbs/red_car.png").status_code == 404  # not in the searched banks' folders


# ----------------------------------------------------------------------------------------------- the command


def test_help_imports_neither_torch_nor_starlette():
    code = ("import sys\nfrom vsekit.cli import main\nsys.argv = ['vsekit', '--help']\ntry:\n    main()\n"
            "except SystemExit:\n    pass\nprint('MODS', 'torch' in sys.modules, 'starlette' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert " serve " in out.stdout and out.stdout.strip().endswith("MODS False False"), out.stdout[-500:]


CASES, case = cases()


@case
def serve_without_the_web_packages(env):
    return ["serve", str(env.ckpt()), "--port", "0"], ["pip install 'vsekit[serve]'", "no_such_web_package"]


@case
def serve_missing_images_folder(env):
    return ["serve", str(env.ckpt()), "--images", str(env.root / "nope")], ["nope", "does not exist"]


@case
def serve_port_taken(env):
    return ["serve", str(env.ckpt()), "--port", str(env.taken_port)], ["cannot listen on 127.0.0.1:", "--port 0"]


@case
def serve_unknown_model(env):
    return ["serve", str(env.root / "no_such_run"), "--port", "0"], ["no_such_run", "no such run folder"]


@pytest.mark.parametrize("make", CASES)
def test_cli_refusals(make, env, monkeypatch):
    if make is serve_without_the_web_packages:
        monkeypatch.setattr("vsekit.serve.WEB_MODULES", {"no_such_web_package": ("no_such_web_package",)})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        env.taken_port = taken.getsockname()[1]
        check_case(make, env)


def test_one_unreadable_photo_is_left_out_of_the_bank_not_fatal(toy, registered_extractor, tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.setenv(retrieval.ENV_CACHE, str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "mine_red.png").write_bytes(png(RED))
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    r = retrieval.Retriever.load(toy / "toy", caption_bank=toy / "cbank", extractor="toy_color")
    with caplog.at_level("WARNING"):
        bank = photo_bank(r, toy / "toy", photos, "toy_color")
    assert bank.ids == ["mine_red.png"]
    assert "1 image(s) could not be read and are left out of the bank" in caplog.text and "broken.jpg" in caplog.text
    (photos / "mine_red.png").write_bytes(b"also broken")  # nothing readable left: one clear error
    with pytest.raises(DataError, match="cannot use this image"):
        photo_bank(r, toy / "toy", photos, "toy_color")
