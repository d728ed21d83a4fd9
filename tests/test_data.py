"""Tokenizer, vocabulary, the precomp and flickr8k readers, bucketed batches and collate."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MINI, write_precomp

from vsekit import spec as spec_mod
from vsekit.data.batching import CaptionStore, bucketed_batches, collate
from vsekit.data.csv_captions import Flickr8kReader
from vsekit.data.readers import PrecompReader, Split, embedded_path
from vsekit.data.tokenize import split_tokens, tokenize
from vsekit.data.vocab import EOS, UNK, Vocab, encode_all
from vsekit.errors import DataError

# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    "text,tokens",
    [
        ("The dog's mouth.", ["the", "dog", "'s", "mouth", "."]),
        ("A dog, running!", ["a", "dog", ",", "running", "!"]),
        ("  Two   DOGS\tplay ", ["two", "dogs", "play"]),
        ("rock-climbing", ["rock", "-", "climbing"]),
        ("", []),
    ],
)
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_split_tokens_is_str_split():
    line = " the dog 's  mouth .\t"
    assert split_tokens(line) == line.split() == ["the", "dog", "'s", "mouth", "."]


# --------------------------------------------------------------------------- vocab

CAPS = [["b", "a", "c"], ["a", "b", "a"], ["d", "a"], ["c", "b"]]  # a:4 b:3 c:2 d:1


def test_vocab_order_and_specials():
    v = Vocab.build(CAPS)
    assert v.words == ["<eos>", "<unk>", "a", "b", "c", "d"]
    assert v.index["<eos>"] == EOS == 0 and v.index["<unk>"] == UNK == 1
    counts = Counter(w for c in CAPS for w in c)
    ranked = [counts[w] for w in v.words[2:]]
    assert ranked == sorted(ranked, reverse=True)


def test_vocab_ties_are_alphabetical():
    v = Vocab.build([["z", "y", "x"], ["y"]])
    assert v.words[2:] == ["y", "x", "z"]


def test_vocab_min_count_and_max_size():
    assert Vocab.build(CAPS, min_count=2).words == ["<eos>", "<unk>", "a", "b", "c"]
    assert Vocab.build(CAPS, min_count=4).words == ["<eos>", "<unk>", "a"]
    v = Vocab.build(CAPS, max_size=4)
    assert len(v) == 4 and v.words == ["<eos>", "<unk>", "a", "b"]


def test_vocab_encode_unknown_and_n_words():
    v = Vocab.build(CAPS)
    assert v.encode(["a", "zebra", "d"]) == [2, UNK, 5]
    # n_words: indices >= n_words become <unk>, as the reference's cutoff
    assert v.encode(["a", "b", "c", "d"], n_words=4) == [2, 3, UNK, UNK]
    assert v.decode([2, 3, 0]) == ["a", "b", "<eos>"]


def test_vocab_json_round_trip(tmp_path):
    v = Vocab.build([["é", "ß", "dog"], ["dog"]])
    path = tmp_path / "vocab.json"
    v.save(path)
    assert json.loads(path.read_text(encoding="utf-8"))["words"] == v.words
    assert Vocab.load(path) == v
    assert Vocab.from_json(v.to_json()) == v


def test_vocab_load_refuses_other_json(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text('{"words": ["a"]}')
    with pytest.raises(DataError, match="not a vsekit vocabulary"):
        Vocab.load(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match=str(path)):
        Vocab.load(path)


def test_encode_all_flat_and_eos():
    v = Vocab.build(CAPS)
    flat, lengths = encode_all(v, [["a", "b"], ["zz"], ["d", "c", "a"]])
    assert lengths.tolist() == [2, 1, 3]
    assert flat.tolist() == [2, 3, UNK, 5, 4, 2]
    flat, lengths = encode_all(v, [["a"], ["b"]], append_eos=True)
    assert lengths.tolist() == [2, 2] and flat.tolist() == [2, EOS, 3, EOS]


# --------------------------------------------------------------------------- precomp reader


def caps_lines(n: int) -> list[str]:
    return [f"caption number {i} here" for i in range(n)]


def reader(folder: Path, name: str | None = None, k: int = 5) -> PrecompReader:
    return PrecompReader(PrecompReader.Config(dir=str(folder), name=name, caps_per_image=k))


@pytest.fixture
def feats():
    return np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)


def test_precomp_row_per_image(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    s = reader(tmp_path).read("test")
    assert s.n_images == 3 and len(s.captions) == 15
    np.testing.assert_array_equal(s.images, feats)
    assert s.cap2img.tolist() == [i // 5 for i in range(15)]
    assert s.captions[7] == "caption number 7 here"
    assert s.report["layout"] == "row-per-image"
    assert set(s.files) == {tmp_path / "test_caps.txt", tmp_path / "test_ims.npy"}


def test_precomp_row_per_caption(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), np.repeat(feats, 5, axis=0))
    s = reader(tmp_path).read("test")
    assert s.n_images == 3
    np.testing.assert_array_equal(s.images, feats)
    assert s.cap2img.tolist() == [i // 5 for i in range(15)]
    assert s.report["layout"] == "row-per-caption"


def test_precomp_both_layouts_agree_on_real_rows(tmp_path):
    caps = (MINI / "dev_caps.txt").read_text().splitlines()[:50]
    rows = np.load(MINI / "dev_ims.npy")[:10]
    write_precomp(tmp_path / "a", "dev", caps, rows)
    write_precomp(tmp_path / "b", "dev", caps, np.repeat(rows, 5, axis=0), prefix="f8k_")
    a, b = reader(tmp_path / "a").read("dev"), reader(tmp_path / "b", name="f8k").read("dev")
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and a.cap2img.tolist() == b.cap2img.tolist()


def test_precomp_name_prefix(tmp_path, feats):
    write_precomp(tmp_path, "dev", caps_lines(15), feats, prefix="f8k_")
    s = reader(tmp_path, name="f8k").read("dev")
    assert s.n_images == 3 and tmp_path / "f8k_dev_caps.txt" in s.files
    # without a name, a single NAME_SPLIT pair is found
    s2 = reader(tmp_path).read("dev")
    np.testing.assert_array_equal(s2.images, s.images)
    # a wrong name does not fall back
    with pytest.raises(DataError, match=re.escape("coco_dev_caps.txt: no such file")):
        reader(tmp_path, name="coco").read("dev")


def test_precomp_no_prefix_ignores_prefixed_when_plain_exists(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    write_precomp(tmp_path, "test", caps_lines(10), feats[:2], prefix="other_")
    assert reader(tmp_path).read("test").n_images == 3


def test_embedded_mini():
    r = reader(Path(str(MINI)))
    for split, n in (("train", 1000), ("dev", 200), ("test", 200)):
        s = r.read(split)
        assert s.n_images == n and len(s.captions) == 5 * n
        assert s.dim_image == 1280
    assert embedded_path("vsekit:f8k_mini") == MINI
    with pytest.raises(DataError, match="vsekit:f8k_mini"):
        embedded_path("vsekit:nope")


@pytest.mark.parametrize("n_caps", [9, 21, 16])  # 3 or 7 per row, or not a multiple at all
def test_precomp_count_mismatch(tmp_path, feats, n_caps):
    write_precomp(tmp_path, "test", caps_lines(n_caps), feats)
    with pytest.raises(DataError) as info:
        reader(tmp_path).read("test")
    msg = str(info.value)
    assert str(tmp_path / "test_caps.txt") in msg and str(tmp_path / "test_ims.npy") in msg
    assert f"{n_caps} captions" in msg and "3 feature rows" in msg


def test_precomp_rows_per_caption_not_repeated(tmp_path):
    rows = np.random.default_rng(1).standard_normal((15, 4)).astype(np.float32)
    write_precomp(tmp_path, "test", caps_lines(15), rows)
    with pytest.raises(DataError, match="not copies of one image row") as info:
        reader(tmp_path).read("test")
    assert str(tmp_path / "test_ims.npy") in str(info.value)


def test_precomp_one_changed_copy_is_refused(tmp_path, feats):
    rows = np.repeat(feats, 5, axis=0)
    rows[7, 2] += 1e-3
    write_precomp(tmp_path, "test", caps_lines(15), rows)
    with pytest.raises(DataError, match="not copies"):
        reader(tmp_path).read("test")


def test_precomp_empty_caption_file(tmp_path, feats):
    write_precomp(tmp_path, "test", [], feats)
    with pytest.raises(DataError, match=f"{tmp_path / 'test_caps.txt'}: empty file"):
        reader(tmp_path).read("test")


def test_precomp_empty_caption_line(tmp_path, feats):
    lines = caps_lines(15)
    lines[4] = "   "
    write_precomp(tmp_path, "test", lines, feats)
    with pytest.raises(DataError, match=f"{tmp_path / 'test_caps.txt'}: line 5: empty caption"):
        reader(tmp_path).read("test")


def test_precomp_utf8_bom_is_not_a_token(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    path = tmp_path / "test_caps.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    s = reader(tmp_path).read("test")
    assert s.captions[0] == "caption number 0 here"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_precomp_non_finite_features(tmp_path, feats, bad):
    feats[2, 1] = bad
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    with pytest.raises(DataError, match="NaN or inf") as info:
        reader(tmp_path).read("test")
    assert str(tmp_path / "test_ims.npy") in str(info.value) and "row 2" in str(info.value)


def test_precomp_non_utf8_captions(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    (tmp_path / "test_caps.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 15)
    with pytest.raises(DataError, match="not UTF-8") as info:
        reader(tmp_path).read("test")
    assert str(tmp_path / "test_caps.txt") in str(info.value)


def test_precomp_missing_files(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    (tmp_path / "test_ims.npy").unlink()
    with pytest.raises(DataError, match=f"{tmp_path / 'test_ims.npy'}: no such file"):
        reader(tmp_path).read("test")
    (tmp_path / "test_caps.txt").unlink()
    with pytest.raises(DataError, match=f"{tmp_path / 'test_caps.txt'}: no such file"):
        reader(tmp_path).read("test")
    with pytest.raises(DataError, match="no such dataset folder"):
        reader(tmp_path / "absent").read("test")
    problems = reader(tmp_path).check()
    assert f"{tmp_path / 'test_caps.txt'}: no such file" in problems


def test_precomp_one_dimensional_array(tmp_path):
    write_precomp(tmp_path, "test", caps_lines(15), np.ones(15, dtype=np.float32))
    with pytest.raises(DataError, match=r"expected a 2-D .* got shape \(15,\)") as info:
        reader(tmp_path).read("test")
    assert str(tmp_path / "test_ims.npy") in str(info.value)


def test_precomp_non_float_and_pickled_arrays(tmp_path):
    write_precomp(tmp_path, "test", caps_lines(15), np.ones((3, 4), dtype=np.int32))
    with pytest.raises(DataError, match="floating-point"):
        reader(tmp_path).read("test")
    np.save(tmp_path / "test_ims.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=re.escape("not a readable .npy")):
        reader(tmp_path).read("test")


def test_precomp_unknown_split(tmp_path, feats):
    write_precomp(tmp_path, "test", caps_lines(15), feats)
    with pytest.raises(DataError, match="unknown split 'val'"):
        reader(tmp_path).read("val")


def test_split_subset():
    s = Split("x", ["a"] * 15, np.eye(3, dtype=np.float32), np.arange(15) // 5)
    sub = s.subset(2)
    assert sub.n_images == 2 and len(sub.captions) == 10 and sub.cap2img.max() == 1


# --------------------------------------------------------------------------- flickr8k reader


def make_flickr(root: Path, captions: dict[str, list[str]], splits: dict[str, list[str]],
                features: dict[str, np.ndarray]) -> Path:
    """A fabricated Flickr8K folder: captions.txt (CSV), splits/, and feats/{test_ims.npy,test_ids.txt}."""
    import csv

    root.mkdir(parents=True, exist_ok=True)
    with open(root / "captions.txt", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        for name, caps in captions.items():
            for c in caps:
                w.writerow([name, c])
    (root / "splits").mkdir(exist_ok=True)
    for split, names in splits.items():
        (root / "splits" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    (root / "feats").mkdir(exist_ok=True)
    names = list(features)
    np.save(root / "feats" / "all_ims.npy", np.stack([features[n] for n in names]))
    (root / "feats" / "all_ids.txt").write_text("".join(n + "\n" for n in names))
    return root


def flickr_reader(root: Path) -> Flickr8kReader:
    s = spec_mod.from_dict({
        "data": {"type": "flickr8k", "root": str(root), "features": {"type": "precomputed", "dir": "feats"}},
        "model": {"dim": 8}, "loss": {"type": "contrastive"},
    }, base=root)
    return s.data.build()


@pytest.fixture
def fake_flickr(tmp_path):
    rng = np.random.default_rng(3)
    def five(name):
        return [f'A dog, "{name}" number {j}, runs.' for j in range(5)]

    captions = {"a.jpg": five("a"), "b.jpg": five("b"), "c.jpg": five("c")[:3], "d.jpg": five("d"),
                "e.jpg": [*five("e"), "A sixth caption."]}
    feats = {n: rng.standard_normal(6).astype(np.float32) for n in ("e.jpg", "a.jpg", "c.jpg", "b.jpg")}
    root = make_flickr(tmp_path / "f8k", captions,
                       {"test": ["b.jpg", "a.jpg", "c.jpg", "d.jpg"], "train": ["a.jpg", "e.jpg"],
                        "dev": ["a.jpg", "b.jpg", "a.jpg"]}, feats)
    return root, feats


def test_flickr8k_reader_keeps_and_reports(fake_flickr, caplog):
    root, feats = fake_flickr
    with caplog.at_level(logging.WARNING, logger="vsekit.data.readers"):
        s = flickr_reader(root).read("test")
    # c.jpg has 3 captions, d.jpg has no features: both left out, order of the split file kept
    assert s.image_ids == ["b.jpg", "a.jpg"]
    np.testing.assert_array_equal(s.images, np.stack([feats["b.jpg"], feats["a.jpg"]]))
    assert s.cap2img.tolist() == [0] * 5 + [1] * 5
    # quoted commas survive the CSV; the text is kept as written (the model's tokenizer splits it)
    assert s.captions[0] == 'A dog, "b" number 0, runs.'
    assert s.captions[5] == 'A dog, "a" number 0, runs.'
    assert s.report["fewer_than_5_captions"] == ["c.jpg"]
    assert s.report["without_features"] == ["d.jpg"]
    assert s.report["images_listed"] == 4 and s.report["images"] == 2
    text = caplog.text
    assert "fewer than 5 captions" in text and "c.jpg" in text
    assert "without features" in text and "d.jpg" in text
    assert root / "captions.txt" in s.files and root / "splits" / "test.txt" in s.files


def test_flickr8k_more_than_five_captions_uses_the_first_five(fake_flickr):
    root, _feats = fake_flickr
    s = flickr_reader(root).read("train")
    assert s.image_ids == ["a.jpg", "e.jpg"] and len(s.captions) == 10
    assert s.report["more_than_5_captions_truncated"] == ["e.jpg"]
    assert "A sixth caption." not in s.captions
    assert s.captions[9] == 'A dog, "e" number 4, runs.'


def test_flickr8k_duplicate_ids_refused(fake_flickr):
    root, _ = fake_flickr
    with pytest.raises(DataError, match="duplicate image ids") as info:
        flickr_reader(root).read("dev")
    assert str(root / "splits" / "dev.txt") in str(info.value) and "a.jpg" in str(info.value)


def test_flickr8k_duplicate_feature_ids_refused(tmp_path):
    root = make_flickr(tmp_path / "f", {"a.jpg": ["x"] * 5}, {"test": ["a.jpg"]}, {"a.jpg": np.ones(3, np.float32)})
    (root / "feats" / "all_ids.txt").write_text("a.jpg\n")
    np.save(root / "feats" / "more_ims.npy", np.ones((1, 3), np.float32))
    (root / "feats" / "more_ids.txt").write_text("a.jpg\n")
    with pytest.raises(DataError, match=re.escape("'a.jpg' appears twice")):
        flickr_reader(root).read("test")


def test_flickr8k_missing_files(fake_flickr):
    root, _ = fake_flickr
    (root / "splits" / "train.txt").unlink()
    r = flickr_reader(root)
    assert f"{root / 'splits' / 'train.txt'}: no such file" in r.check()
    with pytest.raises(DataError, match=re.escape("train.txt: no such file")):
        r.read("train")
    (root / "captions.txt").unlink()
    with pytest.raises(DataError, match=re.escape("captions.txt: no such file")):
        flickr_reader(root).read("test")


def test_flickr8k_bad_header(fake_flickr):
    root, _ = fake_flickr
    (root / "captions.txt").write_text("file,text\na.jpg,hello\n")
    with pytest.raises(DataError, match="expected a CSV header 'image,caption'"):
        flickr_reader(root).read("test")


def test_flickr8k_utf8_bom(fake_flickr):
    root, _ = fake_flickr
    path = root / "captions.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert flickr_reader(root).read("test").image_ids == ["b.jpg", "a.jpg"]


def test_flickr8k_nothing_left(tmp_path):
    root = make_flickr(tmp_path / "f", {"a.jpg": ["x"] * 2}, {"test": ["a.jpg"]}, {"a.jpg": np.ones(3, np.float32)})
    with pytest.raises(DataError, match="no image of split 'test'"):
        flickr_reader(root).read("test")


def test_flickr8k_real_test_split(shared_data):
    feats_dir = shared_data / "flickr8k-effnet-lite0"
    s = flickr_reader_real(shared_data).read("test")
    assert s.n_images == 1000 and len(s.captions) == 5000
    assert s.image_ids == (feats_dir / "test_ids.txt").read_text().split()
    ref = np.load(feats_dir / "test_ims.npy")
    np.testing.assert_array_equal(s.images, ref.astype(np.float32))
    # the reference captions were made with the regex tokenizer (the default)
    assert [tokenize(c) for c in s.captions] == [line.split() for line in
                                                (feats_dir / "test_caps.txt").read_text().splitlines()]
    assert s.report.get("images") == 1000 and "without_features" not in s.report


def flickr_reader_real(root: Path) -> Flickr8kReader:
    return Flickr8kReader(Flickr8kReader.Config(
        root=str(root / "flickr8k"),
        features=spec_mod.build_component("image_feature_extractor",
                                          {"type": "precomputed", "dir": str(root / "flickr8k-effnet-lite0")},
                                          "data.features", root)))


# --------------------------------------------------------------------------- batching


def lengths_fixture(n=1000, seed=0):
    return np.random.default_rng(seed).integers(1, 30, size=n)


@pytest.mark.parametrize("bucket", [True, False])
def test_bucketed_batches_cover_every_index_once(bucket):
    lengths = lengths_fixture(1003)
    batches = bucketed_batches(lengths, 32, np.random.default_rng(5), bucket=bucket)
    allidx = np.concatenate(batches)
    assert sorted(allidx.tolist()) == list(range(1003))
    assert all(2 <= len(b) <= 32 for b in batches)


def test_bucketed_batches_near_homogeneous():
    lengths = lengths_fixture(6400)
    rng = np.random.default_rng(1)
    bucketed = bucketed_batches(lengths, 64, rng, bucket=True)
    plain = bucketed_batches(lengths, 64, np.random.default_rng(1), bucket=False)
    def spread(bs):
        return np.mean([lengths[b].max() - lengths[b].min() for b in bs])

    # 50 batches per pool of 3200 captions over 29 lengths: each batch spans at most ~2 lengths
    assert spread(bucketed) <= 1.5
    assert spread(plain) > 20
    # and the batch order is shuffled, not sorted by length
    firsts = [lengths[b].min() for b in bucketed]
    assert firsts != sorted(firsts)


def test_bucketed_batches_deterministic_given_seed():
    lengths = lengths_fixture()
    a = bucketed_batches(lengths, 32, np.random.default_rng(7))
    b = bucketed_batches(lengths, 32, np.random.default_rng(7))
    c = bucketed_batches(lengths, 32, np.random.default_rng(8))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_bucketed_batches_drop_single():
    # 65 captions with batch 32: the leftover batch of 1 has no negatives and is dropped
    batches = bucketed_batches(np.ones(65, dtype=np.int64), 32, np.random.default_rng(0))
    assert sorted(len(b) for b in batches) == [32, 32]


def test_collate_pads_with_zero():
    caps = [[5, 6, 7], [8], [9, 10]]
    flat = np.array([t for c in caps for t in c], dtype=np.int64)
    lengths = np.array([len(c) for c in caps], dtype=np.int64)
    starts = np.array([0, 3, 4], dtype=np.int64)
    b = collate(flat, starts, lengths)
    assert b.tokens.dtype == torch.int64 and b.tokens.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]
    assert b.lengths.tolist() == [3, 1, 2]
    # a subset in another order
    b2 = collate(flat, starts[[2, 1]], lengths[[2, 1]])
    assert b2.tokens.tolist() == [[9, 10], [8, 0]]


def test_caption_store_batch_matches_captions():
    v = Vocab.build(CAPS)
    flat, lengths = encode_all(v, CAPS)
    store = CaptionStore(flat, lengths, CAPS)
    b = store.batch(np.array([3, 0, 2]), with_texts=True)
    for row, i in enumerate([3, 0, 2]):
        n = len(CAPS[i])
        assert b.tokens[row, :n].tolist() == v.encode(CAPS[i])
        assert b.tokens[row, n:].tolist() == [0] * (b.tokens.shape[1] - n)
    assert b.texts == [CAPS[3], CAPS[0], CAPS[2]]
