"""The reference's option names in a spec ([reference]) and the contrastive loss's ``ncon``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from vsekit import spec as spec_mod
from vsekit.data.presets import ENV_ROOT
from vsekit.errors import SpecError
from vsekit.losses import ContrastiveLoss, hinge_costs, negatives_mask, sample_negatives
from vsekit.reference_options import OPTIONS, mapping_table, translate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA = {"type": "precomp", "dir": "data"}


def build(raw: dict, tmp_path: Path | None = None) -> spec_mod.Spec:
    return spec_mod.from_dict(raw, source="exp.toml", base=tmp_path or Path("/tmp"))


def test_every_option_maps(tmp_path):
    ref = {"margin": 0.1, "dim": 512, "dim_image": 4096, "dim_word": 256, "encoder": "gru", "max_epochs": 3,
           "dispFreq": 7, "decay_c": 0.001, "grad_clip": 1.5, "maxlen_w": 50, "optimizer": "adam",
           "batch_size": 64, "saveto": "runs/f8k.npz", "validFreq": 20, "lrate": 0.001, "reload_": False,
           "ncon": 10}
    s = build({"reference": ref, "data": DATA}, tmp_path)
    assert s.model.dim == 512
    assert s.model.sentence_encoder.type == "gru" and s.model.sentence_encoder.config.dim_word == 256
    assert s.model.image_encoder.type == "linear" and s.model.image_encoder.config.normalize_train is False
    assert s.loss.type == "contrastive"
    assert (s.loss.config.margin, s.loss.config.ncon, s.loss.config.same_image_negatives) == (0.1, 10, True)
    t = s.train
    assert (t.max_epochs, t.disp_freq, t.grad_clip, t.maxlen_w, t.batch_size, t.valid_freq, t.lr) == \
        (3, 7, 1.5, 50, 64, 20, 0.001)
    assert t.weight_decay == pytest.approx(0.002)  # the L2 penalty decay_c * sum(theta^2) has gradient 2 decay_c theta
    assert s.output.dir == str(tmp_path / "runs" / "f8k")
    assert set(ref) | {"data"} == set(OPTIONS)


def test_defaults_are_the_reference_defaults():
    s = build({"reference": {}, "data": DATA})
    assert s.model.dim == 1024 and s.model.sentence_encoder.config.dim_word == 300
    assert s.loss.config.margin == 0.2 and s.loss.config.ncon is None
    t = s.train
    assert (t.max_epochs, t.disp_freq, t.weight_decay, t.grad_clip, t.maxlen_w, t.batch_size, t.valid_freq, t.lr) \
        == (15, 10, 0.0, 2.0, 100, 128, 100, 0.0002)


def test_bow_and_its_dimension_rule():
    s = build({"reference": {"encoder": "bow", "dim": 300, "dim_word": 300}, "data": DATA})
    assert s.model.sentence_encoder.type == "bow"
    with pytest.raises(SpecError, match=r"exp.toml: \[model.sentence_encoder\] dim_word: bow needs dim_word"):
        build({"reference": {"encoder": "bow", "dim": 1024}, "data": DATA})


def test_explicit_vsekit_keys_win(caplog):
    raw = {"reference": {"margin": 0.3, "lrate": 0.01, "dim": 256, "encoder": "bow", "dim_word": 256},
           "data": DATA, "train": {"lr": 0.5}, "loss": {"type": "contrastive", "margin": 0.05},
           "model": {"sentence_encoder": {"type": "gru", "dim_word": 32}}}
    with caplog.at_level(logging.WARNING):
        s = build(raw)
    assert s.train.lr == 0.5 and s.loss.config.margin == 0.05 and s.loss.config.same_image_negatives is True
    assert s.model.sentence_encoder.type == "gru" and s.model.sentence_encoder.config.dim_word == 32
    assert s.model.dim == 256 and s.train.batch_size == 128
    assert "[reference] lrate ignored" in caplog.text and "[reference] encoder ignored" in caplog.text
    # a loss of another type keeps its type and only takes the options given that it knows
    s = build({"reference": {"margin": 0.3}, "data": DATA, "loss": {"type": "max_violation"}})
    assert s.loss.type == "max_violation" and s.loss.config.margin == 0.3
    assert s.loss.config.same_image_negatives is False
    s = build({"reference": {"margin": 0.3}, "data": DATA, "loss": {"type": "infonce"}})
    assert s.loss.type == "infonce"


def test_unknown_and_refused_options():
    with pytest.raises(SpecError) as err:
        build({"reference": {"lrat": 1e-3, "disp_freq": 5, "reload_": True, "optimizer": "sgd", "dim": "big",
                             "margin": -1}, "data": DATA})
    msg = str(err.value)
    assert "exp.toml: [reference] lrat: unknown reference option" in msg and "did you mean 'lrate'?" in msg
    assert "[reference] disp_freq: unknown reference option" in msg and "'dispFreq'" in msg
    assert ("[reference] reload_: reload_ = true: continue a run with `vsekit run SPEC --out RUN --resume` instead"
            in msg)
    assert "[reference] optimizer: only 'adam' is supported" in msg
    assert "[reference] dim: expected an integer, got 'big'" in msg
    assert "[reference] margin: expected a number >= 0, got -1" in msg
    with pytest.raises(SpecError, match=r"lr: unknown reference option.*vsekit's name.*'lrate'"):
        build({"reference": {"lr": 1e-3}, "data": DATA})
    with pytest.raises(SpecError, match=r"\[reference\]: expected a table"):
        build({"reference": 3, "data": DATA})


def test_data_preset(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_ROOT, str(tmp_path))
    s = build({"reference": {"data": "coco"}})
    assert s.data.type == "precomp"
    assert s.data.config.dir == str(tmp_path / "coco") and s.data.config.name == "coco"
    s = build({"reference": {"data": "coco"}, "data": DATA}, tmp_path)  # an explicit [data] wins
    assert s.data.config.dir == str(tmp_path / "data")
    with pytest.raises(SpecError, match=r"\[reference\] data: unknown dataset preset 'f8' .*did you mean 'f8k'"):
        build({"reference": {"data": "f8"}})
    monkeypatch.delenv(ENV_ROOT)
    with pytest.raises(SpecError, match=rf"exp.toml: \[reference\] data: .*{ENV_ROOT}.*or give a \[data\] section"):
        build({"reference": {"data": "f8k"}})


def test_translate_leaves_its_input_alone():
    raw = {"reference": {"dim": 64}, "data": DATA, "train": {"lr": 0.1}}
    out = translate(raw, "x.toml")
    assert raw == {"reference": {"dim": 64}, "data": DATA, "train": {"lr": 0.1}}
    assert "reference" not in out and out["train"]["lr"] == 0.1 and out["model"]["dim"] == 64


def test_example_spec_loads():
    path = EXAMPLES / "reference_f8k.toml"
    s = spec_mod.load(path)
    assert s.model.dim == 1024 and s.model.sentence_encoder.type == "gru" and s.loss.type == "contrastive"
    assert s.train.lr == 0.0002 and s.train.valid_freq == 100 and s.train.weight_decay == 0.0
    assert s.data.type == "precomp" and s.data.config.dir.endswith("shared/data/flickr8k-effnet-lite0")
    assert s.output.dir == str((EXAMPLES.parent / "runs" / "reference_f8k").resolve())
    if Path(s.data.config.dir).is_dir():
        assert s.data.build().check() == []


def test_mapping_table_lists_every_option():
    table = mapping_table()
    assert table.startswith("| reference option |")
    for name in OPTIONS:
        assert f"| `{name}` |" in table
    assert "2 * `decay_c`" in table


# --------------------------------------------------------------------------
# ncon


def test_sample_negatives_keeps_ncon_valid_negatives_uniformly():
    ids = torch.tensor([0, 0, 1, 2, 3, 4, 5, 5])
    neg = negatives_mask(ids, same_image_negatives=False)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(neg.shape)
    draws = 2000
    for _ in range(draws):
        pick = sample_negatives(neg, 3, generator=gen)
        assert not (pick & ~neg).any()
        assert (pick.sum(1) == torch.minimum(neg.sum(1), torch.tensor(3))).all()
        counts += pick
    expected = (3 / neg.sum(1, keepdim=True).float()).expand(neg.shape)  # 3 of the row's 6 or 7 negatives
    assert ((counts[neg] / draws - expected[neg]).abs() < 0.05).all()
    few = sample_negatives(torch.tensor([[False, True], [False, False]]), 5)
    assert few.tolist() == [[False, True], [False, False]]


def test_contrastive_ncon():
    torch.manual_seed(0)
    im, s = torch.randn(6, 4), torch.randn(6, 4)
    ids = torch.tensor([0, 1, 1, 2, 3, 4])
    full = ContrastiveLoss(ContrastiveLoss.Config(margin=0.5))
    assert ContrastiveLoss(ContrastiveLoss.Config(margin=0.5, ncon=5))(im, s, ids) == pytest.approx(
        full(im, s, ids).item())  # at least as many as there are negatives: all of them
    loss = ContrastiveLoss(ContrastiveLoss.Config(margin=0.5, ncon=2, same_image_negatives=True))
    torch.manual_seed(3)
    got = loss(im, s, ids)
    torch.manual_seed(3)  # the same draws, by hand
    neg = negatives_mask(ids, True)
    rows, cols = sample_negatives(neg, 2), sample_negatives(neg.t(), 2).t()
    scores = im @ s.t()
    want = hinge_costs(scores, 0.5, rows)[0].sum() + hinge_costs(scores, 0.5, cols)[1].sum()
    assert got.item() == pytest.approx(want.item())
    assert got.item() < full(im, s, ids).item() + ContrastiveLoss(
        ContrastiveLoss.Config(margin=0.5, same_image_negatives=True))(im, s, ids).item()
    assert (rows.sum(1) == 2).all() and (cols.sum(0) == 2).all()


def test_ncon_in_a_spec():
    s = build({"data": DATA, "model": {}, "loss": {"type": "contrastive", "ncon": 4}})
    assert s.loss.config.ncon == 4
    with pytest.raises(SpecError, match=r"\[loss\] ncon: expected a number > 0"):
        build({"data": DATA, "model": {}, "loss": {"type": "contrastive", "ncon": 0}})
    with pytest.raises(SpecError, match=r"\[reference\] ncon: expected an integer > 0"):
        build({"data": DATA, "reference": {"ncon": 0}})
