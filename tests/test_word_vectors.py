"""Pretrained word vectors for the GRU's embeddings (``word_vectors``): the text format and the init."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import tiny_spec_text

import vsekit
from vsekit.errors import DataError
from vsekit.text.gru import GRUEncoder
from vsekit.text.word_vectors import read_word_vectors


def test_reads_the_words_asked_for(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("3 2\ndog 0.5 -1\ncat 2 3e-1\nthe 1 1\n")  # word2vec header, then GloVe-style lines
    got = read_word_vectors(f, ["dog", "cat", "zebra"], 2)
    assert set(got) == {"dog", "cat"}
    np.testing.assert_array_equal(got["cat"], np.array([2, 0.3], np.float32))


@pytest.mark.parametrize("text, needle", [
    ("dog 1 2 3\n", "line 1: expected a word and 2 numbers"),
    ("dog 1 x\n", "line 1: the values of 'dog' are not all numbers"),
    ("cat 1 2\ndog 1 nan\n", "line 2: the vector of 'dog' is not finite"),
    ("5 3\ndog 1 2\n", "line 1: 3-d vectors, expected 2"),
])
def test_bad_lines_are_named(tmp_path, text, needle):
    f = tmp_path / "v.txt"
    f.write_text(text)
    with pytest.raises(DataError, match=needle):
        read_word_vectors(f, ["dog"], 2)


def test_gru_rows_of_found_words_are_set(tmp_path):
    f = tmp_path / "v.txt"
    f.write_text("dog 1 2 3 4\nrun 5 6 7 8\n")
    cfg = GRUEncoder.Config(dim_word=4, word_vectors=str(f))
    enc = GRUEncoder(cfg, vocab_size=4, dim=8)
    before = enc.embed.weight.detach().clone()
    assert enc.init_words(["<pad>", "dog", "cat", "run"]) == 2
    w = enc.embed.weight.detach()
    torch.testing.assert_close(w[1], torch.tensor([1.0, 2, 3, 4]))
    torch.testing.assert_close(w[3], torch.tensor([5.0, 6, 7, 8]))
    torch.testing.assert_close(w[[0, 2]], before[[0, 2]])  # the others keep their random init


def test_training_starts_from_the_vectors(small_data, tmp_path, caplog):
    words = {}
    for line in (small_data / "train_caps.txt").read_text().splitlines()[:50]:
        for t in line.split():
            words.setdefault(t, np.full(16, len(words) / 100, np.float32))
    f = tmp_path / "v.txt"
    f.write_text("".join(w + " " + " ".join(map(str, v)) + "\n" for w, v in words.items()))
    spec = tmp_path / "spec.toml"
    spec.write_text(tiny_spec_text(small_data, model__sentence_encoder={"word_vectors": str(f)},
                                   train={"max_epochs": 1, "lr": 1e-9}))
    with caplog.at_level(logging.INFO, logger="vsekit.text.gru"):
        run = vsekit.train(spec, tmp_path / "run", quiet=True)["run_dir"]
    assert any("word vectors:" in r.message and " of " in r.message for r in caplog.records)
    model = vsekit.load_model(run)  # loading reads the weights, not the file
    f.unlink()
    model = vsekit.load_model(run)
    row = model.sentence_encoder.embed.weight[model.vocab.index["a"]].detach()
    torch.testing.assert_close(row, torch.from_numpy(words["a"]), atol=1e-6, rtol=0)  # lr 1e-9: still the vector
