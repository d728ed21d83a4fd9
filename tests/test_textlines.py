"""One rule for every line file, rows that line up with lines, and queries that say when they are empty
(issue 11, item 5).

The rule (:func:`vsekit.io.read_lines`): a record is a line ended by ``\\n``
(the last may lack it), one trailing ``\\r`` stripped; trailing empty or
whitespace-only lines are ignored; any other empty record is refused with its
1-based line number and the file name. The expected records below are written
out by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vsekit import io, retrieval, testing
from vsekit.cli import cli
from vsekit.cli.retrieval import add_commands
from vsekit.data.csv_captions import Flickr8kReader
from vsekit.data.readers import PrecompReader
from vsekit.errors import DataError
from vsekit.image.precomputed import PrecomputedFeatures
from vsekit.model import encode_sentences

add_commands(cli)

CASE = Path(__file__).resolve().parents[2] / "shared" / "cases" / "encode-blank-line" / "caps.txt"
CASE_BYTES = b"a dog runs on the grass\n\ntwo men play chess\n"  # the shared case, as its README describes it


@pytest.mark.parametrize("data,records", [
    (b"a\nb\nc\n", ["a", "b", "c"]),
    (b"a\nb\nc", ["a", "b", "c"]),                         # no final newline
    (b"a\r\nb\r\nc\r\n", ["a", "b", "c"]),                 # CRLF: one \r stripped
    (b"a\r\r\nb\n", ["a\r", "b"]),                         # only one
    (b"a\nb\n\n  \n\t\n", ["a", "b"]),                     # trailing blank lines ignored
    (b"a\nb\n\r\n", ["a", "b"]),
    (b"\xef\xbb\xbfa b\n", ["a b"]),                       # a BOM is not text
    (" a\u2028b \x0bc\n".encode(), [" a\u2028b \x0bc"]),   # other Unicode breaks stay inside the record
])
def test_records(tmp_path, data, records):
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    assert io.read_lines(path) == records


@pytest.mark.parametrize("data,line", [(b"a\n\nb\n", 2), (b"\na\n", 1), (b"a\n \t\nb", 2), (b"a\r\n\r\nb\r\n", 2),
                                       (b"a\nb\n\nc\n\n", 3)])
def test_inner_empty_record_refused_by_line(tmp_path, data, line):
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        io.read_lines(path, "caption")
    assert str(info.value).startswith(f"{path}: line {line}: empty caption")


def test_empty_file_and_bad_bytes(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"\n \n")
    with pytest.raises(DataError, match=re.escape("f.txt: empty file")):
        io.read_lines(path)
    assert io.read_lines(path, allow_empty_file=True) == []
    path.write_bytes(b"ok\nok\n\xff\n")
    with pytest.raises(DataError, match=re.escape("f.txt: line 3: not UTF-8")):
        io.read_lines(path)


# --------------------------------------------------------------------------- every reader of line files


def test_precomp_trailing_blank_line_accepted_inner_refused(tmp_path):
    feats = np.ones((1, 3), np.float32)
    for split in ("train", "dev", "test"):
        np.save(tmp_path / f"{split}_ims.npy", feats)
        (tmp_path / f"{split}_caps.txt").write_text("a\nb\nc\nd\ne\n\n")
    reader = PrecompReader(PrecompReader.Config(dir=str(tmp_path)))
    assert reader.read("test").captions == ["a", "b", "c", "d", "e"]
    (tmp_path / "dev_caps.txt").write_text("a\nb\n\nd\ne\nf\n")
    with pytest.raises(DataError, match=r"dev_caps.txt: line 3: empty caption"):
        reader.read("dev")


@pytest.fixture
def flickr(tmp_path):
    root = tmp_path / "f8k"
    (root / "splits").mkdir(parents=True)
    (root / "feats").mkdir()
    lines = ["image,caption"] + [f"{n}.jpg,caption {j} of {n}" for n in "ab" for j in range(5)]
    (root / "captions.txt").write_text("\n".join(lines) + "\n\n")  # one trailing blank line
    for split in ("train", "dev", "test"):
        (root / "splits" / f"{split}.txt").write_text("a.jpg\nb.jpg\n")
    np.save(root / "feats" / "all_ims.npy", np.eye(2, 3, dtype=np.float32))
    (root / "feats" / "all_ids.txt").write_text("a.jpg\nb.jpg\n")
    def reader() -> Flickr8kReader:  # a new extractor each time: it caches the ids file it read
        feats = PrecomputedFeatures(PrecomputedFeatures.Config(dir=str(root / "feats")))
        return Flickr8kReader(Flickr8kReader.Config(root=str(root), features=_Built(feats)))

    return root, reader


class _Built:
    """A component stand-in whose build() returns an already built extractor."""

    def __init__(self, obj):
        self.obj = obj

    def build(self):
        return self.obj


def test_flickr8k_trailing_blank_line_no_longer_refuses(flickr):
    _, reader = flickr
    s = reader().read("test")
    assert s.image_ids == ["a.jpg", "b.jpg"] and s.captions[6] == "caption 1 of b"


def test_flickr8k_empty_caption_refused_by_line(flickr):
    root, reader = flickr
    text = (root / "captions.txt").read_text().replace("a.jpg,caption 3 of a", "a.jpg,  ")
    (root / "captions.txt").write_text(text)
    with pytest.raises(DataError) as info:
        reader().read("test")
    assert str(info.value) == f"{root / 'captions.txt'}: line 5: empty caption for 'a.jpg'"


def test_flickr8k_split_and_ids_files_follow_the_rule(flickr):
    root, reader = flickr
    (root / "splits" / "test.txt").write_text("a.jpg\n\nb.jpg\n")
    with pytest.raises(DataError, match=r"splits/test.txt: line 2: empty image name"):
        reader().read("test")
    (root / "splits" / "test.txt").write_text("a.jpg\r\nb.jpg\r\n\r\n")
    assert reader().read("test").image_ids == ["a.jpg", "b.jpg"]
    (root / "feats" / "all_ids.txt").write_text("a.jpg\n\nb.jpg\n")
    with pytest.raises(DataError, match=r"all_ids.txt: line 2: empty image id"):
        reader().read("test")


def test_retrieval_captions_and_ids_files(tmp_path):
    plain = tmp_path / "caps.txt"
    plain.write_bytes(b"  a dog \r\nthe cat\n\n")
    assert retrieval.read_captions(plain) == (["a dog", "the cat"], None)
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text('image,caption\nx.jpg,"a dog, running"\ny.jpg,""\n')
    with pytest.raises(DataError, match=r"caps.csv: line 3: empty caption"):
        retrieval.read_captions(csv_file)
    ids = tmp_path / "ids.txt"
    ids.write_text("x.jpg\n \ny.jpg\n")
    with pytest.raises(DataError, match=r"ids.txt: line 2: empty image id"):
        retrieval.read_ids(ids)


# --------------------------------------------------------------------------- encode, retrieve


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("textlines") / "run"
    old = torch.get_num_threads()
    try:
        data = {"type": "precomp", "dir": str(testing.tiny_dataset(out.parent / "d"))}
        testing.run_quick(testing.tiny_spec(model={"dim": 16, "sentence_encoder": {"type": "bow"}}, data=data), out)
    finally:
        torch.set_num_threads(old)
    return out


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)


def one_error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in result.output, err
    return err.strip()


def test_encode_refuses_the_shared_blank_line_case(run_dir, tmp_path):
    if CASE.is_file():
        assert CASE.read_bytes() == CASE_BYTES
    elif os.environ.get("CI") == "true":
        pytest.fail(f"{CASE}: the shared case file is missing")
    caps = tmp_path / "caps.txt"
    caps.write_bytes(CASE_BYTES)
    err = one_error_line(invoke("encode", run_dir, "--captions", caps, "-o", tmp_path / "caps.npy"))
    assert err == f"error: {caps}: line 2: empty caption (every line up to the last must hold one, so that rows " \
                  f"line up with lines)"
    assert not list(tmp_path.glob("caps.np*")) and not list(tmp_path.glob(".caps*"))


def test_encode_rows_match_records_and_formats(run_dir, tmp_path):
    from vsekit.checkpoint import load

    model = load(run_dir)[0]
    caps = tmp_path / "caps.txt"
    caps.write_bytes(b"a dog runs\r\ntwo men play chess\nzzqx\n\n")  # CRLF, a word-less caption, a trailing blank
    want_texts = ["a dog runs", "two men play chess", "zzqx"]
    want = np.stack([encode_sentences(model, [t])[0] for t in want_texts])  # one at a time: row i is caption i
    res = invoke("encode", run_dir, "--captions", caps, "-o", tmp_path / "e.npy")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), want, atol=1e-6)
    assert "warning:" in res.stderr and "1 caption(s) with no word the model knows (first: line 3)" in res.stderr
    res = invoke("encode", run_dir, "--captions", caps, "-o", tmp_path / "e.npz")
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["embeddings", "texts"]
        np.testing.assert_allclose(z["embeddings"], want, atol=1e-6)
        assert z["texts"].tolist() == want_texts
    csv_file = tmp_path / "caps.csv"
    csv_file.write_text("image,caption\nx.jpg,a dog runs\ny.jpg,two men play chess\n")
    assert invoke("encode", run_dir, "--captions", csv_file, "-o", tmp_path / "c.npz").exit_code == 0
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert z["ids"].tolist() == ["x.jpg", "y.jpg"] and z["texts"].tolist() == want_texts[:2]
    feats = tmp_path / "f.npy"
    np.save(feats, np.ones((3, model.dim_image), np.float32))
    assert invoke("encode", run_dir, "--features", feats, "-o", tmp_path / "f.NPZ").exit_code == 0
    with np.load(tmp_path / "f.NPZ", allow_pickle=False) as z:
        assert z["embeddings"].shape == (3, model.dim) and z["rows"].tolist() == [0, 1, 2]
    for bad in ("x.parquet", "x", "x.npy.gz"):
        err = one_error_line(invoke("encode", run_dir, "--captions", caps, "-o", tmp_path / bad))
        assert "-o takes .npy or .npz" in err
        assert not (tmp_path / bad).exists()


def test_empty_or_unknown_query_says_so(run_dir, tmp_path):
    run = run_dir.with_name(f"{run_dir.name}_{tmp_path.name}")  # beside it: its data paths are relative
    shutil.copytree(run_dir, run)  # its default banks are built into the folder
    err = one_error_line(invoke("retrieve", run, "--text", ""))
    assert "query text '' is empty" in err
    err = one_error_line(invoke("retrieve", run, "--text", "  ;; "))
    assert "query text '  ;; '" in err
    err = one_error_line(invoke("retrieve", run, "--text", "zzqx qqzx"))
    assert "none of its words is in the model's vocabulary" in err
    err = one_error_line(invoke("retrieve", run, "--text", "a dog", "--plus", "zzqx"))
    assert "arithmetic word 'zzqx': none of its words" in err
    res = invoke("retrieve", run, "--text", "a dog zzqx", "-k", 1, "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["results"]) == 1
