"""One tokenizer on every path (issue 11, item 3).

For every built-in reader, the word ids a caption becomes are the same in
training (the caption store the batches are cut from), evaluation, the
checkpoint read back, ``encode_sentences``, a caption bank and a retrieval
query; and the model's embeddings of the same batches are bit-identical on
each path. The expected ids are derived by hand: the tokens of each caption
are written out literally (or by ``str.lower().split()`` for ``lower_split``)
and looked up in the model's word list with a plain dict.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vsekit import checkpoint, retrieval
from vsekit import spec as spec_mod
from vsekit.data.tokenize import TOKENIZERS, get_tokenizer
from vsekit.errors import CheckpointError, SpecError
from vsekit.evaluate import evaluate_split
from vsekit.model import encode_sentences, token_budget_batches
from vsekit.training import distributed
from vsekit.training.setup import Setup, load_data

# cased, punctuated raw text: where the tokenizers differ
CAPTIONS = [
    "A Dog runs.", "The dog's ball, red", "TWO men play Chess", "a man in a hat", "Kids jump; a dog barks",
    "A red car", "a Red Car parks", "Snow on the Hills", "dogs run in snow", "the man's hat is blue",
]
# the regex tokenizer's tokens, written out by hand
REGEX_TOKENS = [
    ["a", "dog", "runs", "."], ["the", "dog", "'s", "ball", ",", "red"], ["two", "men", "play", "chess"],
    ["a", "man", "in", "a", "hat"], ["kids", "jump", ";", "a", "dog", "barks"], ["a", "red", "car"],
    ["a", "red", "car", "parks"], ["snow", "on", "the", "hills"], ["dogs", "run", "in", "snow"],
    ["the", "man", "'s", "hat", "is", "blue"],
]
N_IMAGES = 2  # 5 captions each


class EchoEncoder(nn.Module):
    """A sentence encoder whose (normalized) output spells out the word ids it was given:
    ``[1, id_0, id_1, ..., 0, ..., length]``; ids are read back as ``round(v[1 + t] / v[0])``."""

    needs_texts = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def encode(self, batch):
        tokens, lengths = batch.tokens, batch.lengths
        out = torch.zeros(len(tokens), self.dim, dtype=torch.float64)
        out[:, 0] = 1.0
        t = min(tokens.shape[1], self.dim - 2)
        out[:, 1 : 1 + t] = tokens[:, :t].double()
        out[:, -1] = lengths.double()
        return out.float()


def spelled_ids(emb: np.ndarray) -> list[list[int]]:
    """The id sequences an :class:`EchoEncoder` embedding spells out."""
    e = np.asarray(emb, dtype=np.float64)
    scaled = e / e[:, :1]
    lengths = np.rint(scaled[:, -1]).astype(int)
    return [np.rint(row[1 : 1 + n]).astype(int).tolist() for row, n in zip(scaled, lengths, strict=True)]


class Capture:
    """A metric that keeps the embeddings it is given (the evaluation path's caption embeddings)."""

    def compute(self, images, captions, cap2img, folds=None):
        self.captions = captions
        return {}


def write_precomp_data(root: Path) -> dict:
    root.mkdir(parents=True)
    feats = np.random.default_rng(0).standard_normal((N_IMAGES, 6)).astype(np.float32)
    for split in ("train", "dev", "test"):
        (root / f"{split}_caps.txt").write_text("".join(c + "\n" for c in CAPTIONS), encoding="utf-8")
        np.save(root / f"{split}_ims.npy", feats)
    return {"type": "precomp", "dir": str(root)}


def write_flickr_data(root: Path) -> dict:
    (root / "splits").mkdir(parents=True)
    (root / "feats").mkdir()
    names = [f"im{i}.jpg" for i in range(N_IMAGES)]
    with open(root / "captions.txt", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image", "caption"])
        for j, c in enumerate(CAPTIONS):
            w.writerow([names[j // 5], c])
    for split in ("train", "dev", "test"):
        (root / "splits" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    np.save(root / "feats" / "all_ims.npy", np.random.default_rng(0).standard_normal((N_IMAGES, 6)).astype(np.float32))
    (root / "feats" / "all_ids.txt").write_text("".join(n + "\n" for n in names))
    return {"type": "flickr8k", "root": str(root), "features": {"type": "precomputed", "dir": str(root / "feats")}}


def expected_tokens(tokenizer: str) -> list[list[str]]:
    if tokenizer == "regex":
        return REGEX_TOKENS
    if tokenizer == "lower_split":
        return [c.lower().split() for c in CAPTIONS]
    assert tokenizer == "split"
    return [c.split() for c in CAPTIONS]


# reader, [model] tokenizer (None: unset), the tokenizer expected to be used
CASES = [
    ("precomp", None, "regex"),
    ("flickr8k", None, "regex"),
    ("precomp", "lower_split", "lower_split"),
    ("flickr8k", "split", "split"),
]


@pytest.mark.parametrize("reader,named,used", CASES)
def test_one_tokenizer_on_every_path(tmp_path, reader, named, used):
    data = (write_precomp_data if reader == "precomp" else write_flickr_data)(tmp_path / "data")
    raw = {"name": "t", "data": data, "model": {"dim": 24, "sentence_encoder": {"type": "gru", "dim_word": 8}},
           "loss": {"type": "infonce"}, "train": {"threads": 1, "batch_size": 4}}
    if named is not None:
        raw["model"]["tokenizer"] = named
    spec = spec_mod.from_dict(raw, source="t.toml")
    assert spec_mod.from_dict(spec.to_dict()).model.tokenizer == used  # the spec round-trips the field
    assert ("tokenizer" in spec.to_dict()["model"]) == (used != "regex")  # the default is left out, as before
    run_data = load_data(spec)
    torch.manual_seed(0)
    setup = Setup.build(spec, run_data, torch.device("cpu"), distributed.Dist())
    model = setup.model.eval()
    assert model.tokenizer == used
    words = model.vocab.words
    index = {w: i for i, w in enumerate(words)}
    want = [[index[w] for w in toks] for toks in expected_tokens(used)]
    if used != "split":
        assert not any(w != w.lower() for w in words), "a lowercasing tokenizer leaves no capitalised word"

    # training: the caption store the batches are cut from
    store = setup.store
    train_ids = [store.flat[o : o + n].tolist() for o, n in zip(store.offsets, store.lengths, strict=True)]
    assert train_ids == want

    # the checkpoint records the tokenizer and reads back with it
    checkpoint.save(tmp_path / "ck", "best", model, spec.to_dict())
    assert json.loads((tmp_path / "ck" / "best.json").read_text())["tokenizer"] == used
    loaded, _, _ = checkpoint.load(tmp_path / "ck")
    assert loaded.tokenizer == used and loaded.vocab.words == words

    # bit-identical GRU embeddings for the same batches: training graph vs evaluation vs encode_sentences vs bank
    texts = run_data.test.captions
    lengths = np.array([len(w) for w in want])
    order = np.argsort(-lengths, kind="stable")
    by_train = np.zeros((len(texts), model.dim), np.float32)
    with torch.no_grad():
        for idx in token_budget_batches(lengths[order], order, 512):
            by_train[idx] = model.encode_text(store.batch(idx)).numpy()
    cap = Capture()
    evaluate_split(loaded, run_data.test, metric=cap)
    by_encode = encode_sentences(loaded, texts)
    bank = retrieval.build_caption_bank(loaded, texts, dtype="float32")
    for other in (cap.captions, by_encode, bank.embeddings.numpy()):
        assert np.array_equal(other, by_train)

    # the word ids on every path, read back from what an echoing encoder returns
    loaded.sentence_encoder = EchoEncoder(loaded.dim)
    cap = Capture()
    evaluate_split(loaded, run_data.test, metric=cap)
    assert spelled_ids(cap.captions) == want
    assert spelled_ids(encode_sentences(loaded, texts)) == want
    assert spelled_ids(retrieval.build_caption_bank(loaded, texts, dtype="float32").embeddings.numpy()) == want
    assert spelled_ids(np.stack([retrieval.embed_text(loaded, t) for t in texts])) == want  # retrieve --text


def test_token_lists_go_through_the_model_tokenizer_too(tmp_path):
    """A token list handed to encode_sentences is joined and tokenized again, not used as given."""
    from vsekit.data.vocab import Vocab
    from vsekit.image.linear import LinearImageEncoder
    from vsekit.model import JointModel

    vocab = Vocab.build([["a", "dog"]])
    model = JointModel(EchoEncoder(12), LinearImageEncoder(LinearImageEncoder.Config(), 4, 12), vocab,
                       tokenizer="lower_split")
    got = spelled_ids(encode_sentences(model, [["A", "DOG"], "a Dog"]))
    assert got == [[vocab.index["a"], vocab.index["dog"]]] * 2


def test_unknown_tokenizer_is_an_error_naming_the_close_ones(tmp_path):
    assert set(TOKENIZERS) == {"regex", "lower_split", "split"}
    with pytest.raises(SpecError, match=r"unknown tokenizer 'lower-split': did you mean 'lower_split'"):
        get_tokenizer("lower-split")
    raw = {"data": {"type": "precomp", "dir": "vsekit:f8k_mini"}, "model": {"dim": 8, "tokenizer": "regx"},
           "loss": {"type": "infonce"}}
    from vsekit import api

    problems = api.check_spec(spec_mod.from_dict(raw))
    assert any(p.startswith("[model] tokenizer: unknown tokenizer 'regx': did you mean 'regex'?") for p in problems)
    with pytest.raises(SpecError, match=r"x.toml: \[model\] tokenizer: unknown tokenizer 'regx'"):
        spec = spec_mod.from_dict(raw, source="x.toml")
        Setup.build(spec, load_data(spec), torch.device("cpu"), distributed.Dist())


def test_checkpoint_tokenizer_field(tmp_path):
    """A checkpoint's recorded tokenizer is used; one without the field reads as before (regex); an unknown
    one is refused naming the file."""
    from vsekit.testing import tiny_spec

    spec = spec_mod.from_dict(tiny_spec(model={"dim": 8, "sentence_encoder": {"type": "bow"}, "tokenizer": "split"}))
    data = load_data(spec)
    setup = Setup.build(spec, data, torch.device("cpu"), distributed.Dist())
    path = checkpoint.save(tmp_path, "m", setup.model, spec.to_dict())
    assert checkpoint.load(path)[0].tokenizer == "split"
    meta = json.loads(path.read_text())
    del meta["tokenizer"]
    path.write_text(json.dumps(meta))
    assert checkpoint.load(path)[0].tokenizer == "regex"
    meta["tokenizer"] = "spilt"
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m.json: tokenizer: unknown tokenizer 'spilt': did you mean 'split'"):
        checkpoint.load(path)


def test_a_reader_returning_token_lists_is_refused():
    from vsekit.data.readers import Split
    from vsekit.errors import DataError

    with pytest.raises(DataError, match=r"x: caption 1 is a list, expected text"):
        Split("x", ["a dog", ["a", "dog"]], np.ones((1, 2), np.float32), np.zeros(2, np.int64), source="x")
