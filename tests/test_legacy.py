"""The reference release's model files: restricted unpickling, import, export, and the parameter mapping.

The mapping is checked against a plain numpy transcription of the reference's
equations (row vectors, weights on the right, k words then one <eos> step,
L2-normalized), and against numbers computed by hand for a tiny model.
"""

from __future__ import annotations

import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import vsekit
from vsekit import legacy
from vsekit.data import safe_pickle
from vsekit.errors import CheckpointError, VsekitError

# --------------------------------------------------------------------------
# a plain numpy transcription of the reference's encoders


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def ref_gru_step(P, x, h):
    d = P["encoder_Ux"].shape[0]
    W, b, U = P["encoder_W"], P["encoder_b"], P["encoder_U"]
    r = sigmoid(x @ W[:, :d] + b[:d] + h @ U[:, :d])
    u = sigmoid(x @ W[:, d:] + b[d:] + h @ U[:, d:])
    h_tilde = np.tanh(x @ P["encoder_Wx"] + P["encoder_bx"] + r * (h @ P["encoder_Ux"]))
    return u * h + (1.0 - u) * h_tilde


def ref_ids(worddict, n_words, caption):
    return [worddict[w] if w in worddict and worddict[w] < n_words else 1 for w in caption.split()]


def ref_encode_sentence(P, worddict, n_words, caption, encoder):
    ids = [*ref_ids(worddict, n_words, caption), 0]  # k words, then one <eos> step
    E = P["Wemb"].astype(np.float64)
    if encoder == "bow":
        v = E[ids].sum(0)
    else:
        v = np.zeros(P["encoder_Ux"].shape[0])
        for t in ids:
            v = ref_gru_step({k: a.astype(np.float64) for k, a in P.items()}, E[t], v)
    return v / np.linalg.norm(v)


def ref_encode_image(P, feats):
    e = feats.astype(np.float64) @ P["ff_image_W"].astype(np.float64) + P["ff_image_b"]
    return e / np.linalg.norm(e, axis=1, keepdims=True)


# --------------------------------------------------------------------------
# reference-layout files


WORDS = ["a", "dog", "runs", "on", "the", "beach", "cat", "sleeps", "red", "ball"]


def random_params(rng, encoder, n_words, dim_word, dim, dim_image):
    def u(*shape):
        return rng.uniform(-0.6, 0.6, size=shape).astype(np.float32)

    P = {"Wemb": u(n_words, dim_word), "ff_image_W": u(dim_image, dim), "ff_image_b": u(dim)}
    if encoder == "gru":
        P.update(encoder_W=u(dim_word, 2 * dim), encoder_b=u(2 * dim), encoder_U=u(dim, 2 * dim),
                 encoder_Wx=u(dim_word, dim), encoder_bx=u(dim), encoder_Ux=u(dim, dim))
    return P


def write_reference(folder: Path, name: str, params, options, worddict, protocol: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / f"{name}.npz"
    np.savez(npz, **params)
    (folder / f"{name}.npz.pkl").write_bytes(pickle.dumps(options, protocol=protocol))
    (folder / f"{name}.npz.dictionary.pkl").write_bytes(pickle.dumps(worddict, protocol=protocol))
    return npz


def make_reference(tmp_path, encoder="gru", seed=0, dim=6, dim_word=5, dim_image=7, n_words=10, extra_words=2):
    """Random reference files; the dictionary holds ``extra_words`` words beyond the n_words cutoff."""
    if encoder == "bow":
        dim_word = dim
    rng = np.random.default_rng(seed)
    worddict = {"<eos>": 0, "UNK": 1}
    worddict.update({w: i + 2 for i, w in enumerate(WORDS[: n_words - 2 + extra_words])})
    options = {"dim": dim, "dim_word": dim_word, "dim_image": dim_image, "encoder": encoder, "n_words": n_words,
               "margin": 0.2, "data": "f8k", "max_epochs": 15, "dispFreq": 10, "decay_c": 0.0, "grad_clip": 2.0,
               "maxlen_w": 100, "optimizer": "adam", "batch_size": 128, "saveto": "f8k.npz", "validFreq": 100,
               "lrate": 0.0002, "reload_": False}
    P = random_params(rng, encoder, n_words, dim_word, dim, dim_image)
    npz = write_reference(tmp_path / f"ref_{encoder}", "model", P, options, worddict)
    return npz, P, worddict, options


CAPTIONS = ["a dog runs on the beach", "the cat sleeps", "a zebra runs", "dog", "red ball ball", "a a a a a a"]


# --------------------------------------------------------------------------
# restricted unpickling


def test_reads_plain_data_in_every_old_protocol(tmp_path):
    data = {"dim": 1024, "margin": 0.2, "encoder": "gru", "reload_": False, "saveto": None,
            "shape": (3, [1, 2.5]), "big": 2**40, "neg": -7}
    for protocol in (0, 1, 2):
        p = tmp_path / f"p{protocol}.pkl"
        p.write_bytes(pickle.dumps(data, protocol=protocol))
        assert safe_pickle.read_pickle(p) == data


def test_reads_python2_byte_string_pickles(tmp_path):
    # What Python 2 writes for {'dim': 2, ..., 'margin': 0.2, 'reload_': False} with protocol 2 (str keys and
    # values are SHORT_BINSTRING byte strings, with BINPUT memo entries) ...
    p2 = (b"\x80\x02}q\x00(U\x03dimq\x01K\x02U\x08dim_wordq\x02K\x02U\tdim_imageq\x03K\x03"
          b"U\x07encoderq\x04U\x03gruq\x05U\x07n_wordsq\x06K\x04U\x06marginq\x07G" + struct.pack(">d", 0.2)
          + b"U\x07reload_q\x08\x89u.")
    # ... and for a word dict with protocol 0 (including a UTF-8 word, as Python 2 str bytes)
    p0 = b"(dp0\nS'<eos>'\np1\nI0\nsS'UNK'\np2\nI1\nsS'caf\\xc3\\xa9'\np3\nI2\nsI01\nI3\ns."
    (tmp_path / "o.pkl").write_bytes(p2)
    (tmp_path / "d.pkl").write_bytes(p0)
    assert safe_pickle.read_pickle(tmp_path / "o.pkl") == {"dim": 2, "dim_word": 2, "dim_image": 3, "encoder": "gru",
                                                      "n_words": 4, "margin": 0.2, "reload_": False}
    assert safe_pickle.read_pickle(tmp_path / "d.pkl") == {"<eos>": 0, "UNK": 1, "café": 2, True: 3}


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('x')",))


def _malicious(marker: Path) -> dict[str, bytes]:
    code = f"open({str(marker)!r}, 'w').write('x')".encode()
    return {
        "os_system": pickle.dumps(_System(marker), protocol=2),
        "eval": pickle.dumps(_Eval(marker), protocol=2),
        "nested": pickle.dumps({"dim": 2, "x": [_System(marker)]}, protocol=2),
        "protocol4": pickle.dumps(_Eval(marker), protocol=4),
        # Python 2 style: __builtin__.eval and copy_reg._reconstructor through GLOBAL + REDUCE
        "py2_builtin": b"c__builtin__\neval\n(S'" + code.replace(b"'", b"\\'") + b"'\ntR.",
        "py2_copyreg": b"ccopy_reg\n_reconstructor\n(c__builtin__\nobject\nc__builtin__\nobject\nNtR.",
        "py2_set": b"c__builtin__\nset\n((lp0\nI1\natR.",
        "inst": b"(S'touch x'\nios\nsystem\n.",
        "extension": b"\x80\x02\x82\x01.",
        "persistent": b"\x80\x02U\x01xQ.",
        "build": b"\x80\x02}}b.",
        "self_reference": b"\x80\x02]q\x00h\x00a.",  # a list holding itself: data, but not plain
    }


@pytest.mark.parametrize("kind", list(_malicious(Path("m"))))
def test_refuses_pickles_that_would_run_code(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / f"{kind}.pkl"
    path.write_bytes(_malicious(marker)[kind])
    with pytest.raises(CheckpointError) as err:
        safe_pickle.read_pickle(path)
    assert str(path) in str(err.value) and "refused" in str(err.value)
    assert not marker.exists()


def test_load_legacy_refuses_a_malicious_sidecar(tmp_path):
    npz, *_ = make_reference(tmp_path)
    marker = tmp_path / "pwned"
    opt = npz.with_name(npz.name + ".pkl")
    opt.write_bytes(pickle.dumps({"dim": 6, "n_words": _System(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match="refused") as err:
        vsekit.load_model(npz)
    assert str(opt) in str(err.value)
    assert not marker.exists()


def test_damaged_pickle_is_a_checkpoint_error(tmp_path):
    p = tmp_path / "bad.pkl"
    p.write_bytes(b"\x80\x02}q\x00(U\x03di")
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        safe_pickle.read_pickle(p)
    with pytest.raises(CheckpointError, match="no such file"):
        safe_pickle.read_pickle(tmp_path / "absent.pkl")


# --------------------------------------------------------------------------
# the mapping, against the numpy transcription


@pytest.mark.parametrize("encoder", ["gru", "bow"])
def test_imported_model_matches_the_reference_equations(tmp_path, encoder):
    npz, P, worddict, options = make_reference(tmp_path, encoder)
    model = vsekit.load_model(npz)
    got = vsekit.encode_sentences(model, CAPTIONS)
    want = np.stack([ref_encode_sentence(P, worddict, options["n_words"], c, encoder) for c in CAPTIONS])
    np.testing.assert_allclose(got, want, atol=1e-5)
    feats = np.random.default_rng(1).normal(size=(4, options["dim_image"])).astype(np.float32)
    np.testing.assert_allclose(vsekit.encode_images(model, feats), ref_encode_image(P, feats), atol=1e-5)
    assert model.append_eos and model.tokenizer == "split" and model.n_words == options["n_words"]


def test_gru_cell_matches_step_by_step(tmp_path):
    npz, P, worddict, options = make_reference(tmp_path)
    model = vsekit.load_model(npz)
    rnn = model.sentence_encoder.rnn
    P64 = {k: v.astype(np.float64) for k, v in P.items()}
    ids = [*ref_ids(worddict, options["n_words"], "a dog runs on the beach"), 0]
    h = np.zeros(options["dim"])
    for t in ids:
        x = P64["Wemb"][t]
        with torch.no_grad():
            _, h_torch = rnn(torch.tensor(x, dtype=torch.float32).view(1, 1, -1),
                             torch.tensor(h, dtype=torch.float32).view(1, 1, -1))
        h = ref_gru_step(P64, x, h)
        np.testing.assert_allclose(h_torch.view(-1).numpy(), h, atol=1e-5)


def test_swapping_reset_and_update_gates_breaks_the_match(tmp_path):
    npz, P, worddict, options = make_reference(tmp_path)
    model = vsekit.load_model(npz)
    d = options["dim"]
    rnn = model.sentence_encoder.rnn
    perm = torch.cat([torch.arange(d, 2 * d), torch.arange(0, d), torch.arange(2 * d, 3 * d)])
    with torch.no_grad():
        for p in (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0):
            p.copy_(p[perm])
    got = vsekit.encode_sentences(model, CAPTIONS)
    want = np.stack([ref_encode_sentence(P, worddict, options["n_words"], c, "gru") for c in CAPTIONS])
    assert np.abs(got - want).max() > 1e-2


def test_unknown_words_and_the_n_words_cutoff(tmp_path):
    npz, P, worddict, options = make_reference(tmp_path, n_words=6, extra_words=3)
    model = vsekit.load_model(npz)
    beyond = [w for w, i in worddict.items() if i >= options["n_words"]]
    assert beyond, "the dictionary should hold words past the cutoff"
    # unknown words and words with index >= n_words both become UNK = 1
    ids = model.vocab.encode(["a", "zebra", beyond[0], "<eos>"], model.n_words)
    assert ids == [worddict["a"], 1, 1, 0]
    e = vsekit.encode_sentences(model, ["a zebra", f"a {beyond[0]}", "a UNK", "a <unk>"])
    np.testing.assert_allclose(e[1:], np.repeat(e[:1], 3, axis=0), atol=1e-6)
    np.testing.assert_allclose(e[0], ref_encode_sentence(P, worddict, options["n_words"], "a zebra", "gru"),
                               atol=1e-5)
    assert model.sentence_encoder.embed.weight.shape[0] == options["n_words"]


def test_dictionary_gaps_become_unreachable_placeholders(tmp_path):
    npz, P, worddict, options = make_reference(tmp_path, extra_words=0)
    worddict = {w: i for w, i in worddict.items() if w != "dog"}  # index 3 has no word
    npz.with_name(npz.name + ".dictionary.pkl").write_bytes(pickle.dumps(worddict, protocol=2))
    model = vsekit.load_model(npz)
    assert len(model.vocab) == options["n_words"]
    assert model.vocab.encode(model.vocab.words[3].split()) == [1, 1]  # the placeholder cannot be typed
    np.testing.assert_allclose(vsekit.encode_sentences(model, ["dog runs"])[0],
                               ref_encode_sentence(P, worddict, options["n_words"], "dog runs", "gru"), atol=1e-5)


# --------------------------------------------------------------------------
# a tiny case computed by hand (dim 2, dim_word 2, caption "a b")

# Python 2 pickles of the options (protocol 2, byte strings) and of the word dict (protocol 0)
HAND_OPTIONS = (b"\x80\x02}q\x00(U\x03dimq\x01K\x02U\x08dim_wordq\x02K\x02U\tdim_imageq\x03K\x03"
                b"U\x07encoderq\x04U\x03gruq\x05U\x07n_wordsq\x06K\x04U\x06marginq\x07G?\xc9\x99\x99\x99\x99\x99\x9a"
                b"U\x07reload_q\x08\x89u.")
HAND_DICT = b"(dp0\nS'<eos>'\np1\nI0\nsS'UNK'\np2\nI1\nsS'a'\np3\nI2\nsS'b'\np4\nI3\ns."
HAND_PARAMS = {
    "Wemb": [[0.2, -0.1], [0.5, -0.5], [1.0, 0.0], [0.0, 1.0]],  # <eos>, UNK, a, b
    "encoder_W": [[0.5, 0.0, 0.1, 0.2], [0.0, 0.5, -0.3, 0.1]],  # [W_r | W_u]
    "encoder_b": [0.1, -0.1, 0.0, 0.2],  # [b_r | b_u]
    "encoder_U": [[0.3, -0.2, -0.1, 0.2], [0.1, 0.4, 0.3, 0.0]],  # [U_r | U_u]
    "encoder_Wx": [[1.0, -0.5], [0.5, 1.0]],
    "encoder_bx": [0.0, 0.1],
    "encoder_Ux": [[0.2, 0.1], [-0.3, 0.5]],
    "ff_image_W": [[0.5, -1.0], [2.0, 0.0], [0.0, 1.0]],
    "ff_image_b": [0.1, 0.3],
}
# Worked separately, one scalar at a time (h0 = 0; steps a, b, <eos>):
#   step a:     r = (0.645656, 0.475021)  u = (0.524979, 0.598688)  h = (0.361773, -0.152478)
#   step b:     r = (0.548171, 0.566271)  u = (0.405664, 0.592028)  h = (0.450752,  0.232925)
#   step <eos>: r = (0.588682, 0.463321)  u = (0.518692, 0.579361)  h = (0.311067,  0.124368)
HAND_SENTENCE = [0.9285374672676967, 0.37123869932981285]
# image (1, 2, -1): (1, 2, -1) W + b = (4.6, -1.7), normalized
HAND_IMAGE = [0.9379944988291136, -0.34665014087162893]
# bow with the same Wemb: a + b + <eos> = (1.2, 0.9), normalized
HAND_BOW = [0.8, 0.6]


def _hand_files(folder: Path, encoder: str) -> Path:
    folder.mkdir()
    params = {k: np.array(v, dtype=np.float32) for k, v in HAND_PARAMS.items()}
    options = HAND_OPTIONS
    if encoder == "bow":
        params = {k: v for k, v in params.items() if not k.startswith("encoder_")}
        options = HAND_OPTIONS.replace(b"U\x03gru", b"U\x03bow")
    np.savez(folder / "hand.npz", **params)
    (folder / "hand.npz.pkl").write_bytes(options)
    (folder / "hand.npz.dictionary.pkl").write_bytes(HAND_DICT)
    return folder / "hand.npz"


def test_hand_computed_gru_and_image(tmp_path):
    model = vsekit.load_model(_hand_files(tmp_path / "gru", "gru"))
    np.testing.assert_allclose(vsekit.encode_sentences(model, ["a b"])[0], HAND_SENTENCE, atol=1e-6)
    np.testing.assert_allclose(vsekit.encode_images(model, np.array([[1.0, 2.0, -1.0]]))[0], HAND_IMAGE, atol=1e-6)
    # and the numpy transcription agrees with the hand calculation
    P = {k: np.array(v) for k, v in HAND_PARAMS.items()}
    np.testing.assert_allclose(ref_encode_sentence(P, {"a": 2, "b": 3}, 4, "a b", "gru"), HAND_SENTENCE, atol=1e-12)


def test_hand_computed_bow(tmp_path):
    model = vsekit.load_model(_hand_files(tmp_path / "bow", "bow"))
    np.testing.assert_allclose(vsekit.encode_sentences(model, ["a b", "b a"]), [HAND_BOW, HAND_BOW], atol=1e-6)


# --------------------------------------------------------------------------
# errors


def test_missing_sidecars_parameters_and_shapes(tmp_path):
    npz, P, _worddict, options = make_reference(tmp_path)
    dict_path = npz.with_name(npz.name + ".dictionary.pkl")
    dict_path.rename(tmp_path / "moved.pkl")
    with pytest.raises(CheckpointError, match=re.escape("dictionary.pkl: no such file")):
        vsekit.load_model(npz)
    (tmp_path / "moved.pkl").rename(dict_path)

    bad = dict(P)
    del bad["encoder_Ux"]
    np.savez(npz, **bad)
    with pytest.raises(CheckpointError, match="'encoder_Ux' is missing"):
        vsekit.load_model(npz)

    bad = dict(P, encoder_W=P["encoder_W"].T.copy())
    np.savez(npz, **bad)
    with pytest.raises(CheckpointError, match=r"'encoder_W' has shape \(12, 5\), expected \(5, 12\)"):
        vsekit.load_model(npz)

    np.savez(npz, **P)
    npz.with_name(npz.name + ".pkl").write_bytes(pickle.dumps({k: v for k, v in options.items() if k != "n_words"}))
    with pytest.raises(CheckpointError, match="no 'n_words'"):
        vsekit.load_model(npz)
    npz.with_name(npz.name + ".pkl").write_bytes(pickle.dumps(dict(options, encoder="lstm")))
    with pytest.raises(CheckpointError, match="'gru' or 'bow'"):
        vsekit.load_model(npz)
    with pytest.raises(CheckpointError, match="no such file"):
        vsekit.load_model(tmp_path / "nothing.npz")


# --------------------------------------------------------------------------
# import to a checkpoint, export back


def test_import_legacy_writes_a_loadable_checkpoint(tmp_path):
    npz, _P, _worddict, options = make_reference(tmp_path)
    out = tmp_path / "imported"
    meta = legacy.import_legacy(npz, out)
    assert meta == out / "best.json"
    model = vsekit.load_model(out)
    np.testing.assert_allclose(vsekit.encode_sentences(model, CAPTIONS),
                               vsekit.encode_sentences(vsekit.load_model(npz), CAPTIONS), atol=0)
    assert model.append_eos and model.tokenizer == "split" and model.n_words == options["n_words"]
    assert model.spec["model"]["sentence_encoder"] == {"type": "gru", "dim_word": 5}
    assert model.spec["reference"] == {"data": "f8k"}
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        legacy.import_legacy(npz, out)
    legacy.import_legacy(npz, out, force=True)


@pytest.mark.parametrize("encoder", ["gru", "bow"])
def test_export_then_import_gives_identical_embeddings(tmp_path, encoder):
    npz, P, worddict, options = make_reference(tmp_path, encoder, extra_words=0)
    model = vsekit.load_model(npz)
    out = legacy.export_legacy(model, tmp_path / "exported" / "again.npz")
    assert out.name == "again.npz" and out.with_name("again.npz.pkl").is_file()
    for p in legacy.sidecar_paths(out)[1:]:
        assert p.read_bytes()[:2] == b"\x80\x02"  # protocol 2, readable by Python 2
    opts = safe_pickle.read_pickle(out.with_name("again.npz.pkl"))
    assert {k: opts[k] for k in ("dim", "dim_word", "dim_image", "encoder", "n_words")} == \
        {k: options[k] for k in ("dim", "dim_word", "dim_image", "encoder", "n_words")}
    assert safe_pickle.read_pickle(out.with_name("again.npz.dictionary.pkl")) == worddict
    with np.load(out) as z:
        for k, v in P.items():
            np.testing.assert_array_equal(z[k], v)
    again = vsekit.load_model(out)
    np.testing.assert_array_equal(vsekit.encode_sentences(again, CAPTIONS), vsekit.encode_sentences(model, CAPTIONS))
    feats = np.random.default_rng(2).normal(size=(3, options["dim_image"]))
    np.testing.assert_array_equal(vsekit.encode_images(again, feats), vsekit.encode_images(model, feats))


def _native(encoder="gru", **cfg):
    from vsekit import spec as spec_mod
    from vsekit.data.vocab import Vocab

    dim = 4
    senc = spec_mod.build_component("sentence_encoder", {"type": encoder, **cfg}, "s", Path("."))
    ienc = spec_mod.build_component("image_encoder", {"type": "linear"}, "i", Path("."))
    return vsekit.JointModel.build(senc, ienc, Vocab(["<eos>", "<unk>", "dog", "cat"]), dim, 3)


def test_export_refuses_what_the_reference_cannot_represent(tmp_path):
    with pytest.raises(CheckpointError, match="recurrent biases"):
        legacy.export_legacy(_native("gru", dim_word=3), tmp_path / "a.npz")
    with pytest.raises(CheckpointError, match="one layer and one direction"):
        legacy.export_legacy(_native("gru", dim_word=3, bidirectional=True), tmp_path / "b.npz")
    model = _native("gru", dim_word=3, layers=2)
    with pytest.raises(CheckpointError, match="one layer"):
        legacy.export_legacy(model, tmp_path / "c.npz")
    with pytest.raises(CheckpointError, match=re.escape("ending in .npz")):
        legacy.export_legacy(model, tmp_path / "d.zip")
    assert not list(tmp_path.iterdir())
    # a native gru with its recurrent biases zeroed exports, and so does any bow model
    model = _native("gru", dim_word=3)
    with torch.no_grad():
        model.sentence_encoder.rnn.bias_hh_l0.zero_()
    legacy.export_legacy(model, tmp_path / "e.npz")
    legacy.export_legacy(_native("bow"), tmp_path / "f.npz")
    with np.load(tmp_path / "f.npz") as z:
        assert sorted(z.files) == ["Wemb", "ff_image_W", "ff_image_b"]


def test_cli_import_and_export(tmp_path):
    from vsekit.cli import add_plugin_commands, cli

    add_plugin_commands()
    npz, *_ = make_reference(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["import-legacy", str(npz), "-o", str(tmp_path / "m")], obj={})
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["export-legacy", str(tmp_path / "m"), "-o", str(tmp_path / "x" / "m.npz")], obj={})
    assert res.exit_code == 0, res.output
    assert (tmp_path / "x" / "m.npz.dictionary.pkl").is_file()
    res = runner.invoke(cli, ["import-legacy", str(tmp_path / "nope.npz"), "-o", str(tmp_path / "n")], obj={})
    assert res.exit_code == 2
    assert res.output.strip().startswith("error:") and "nope.npz: no such file" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_user_errors_are_vsekit_errors():
    assert issubclass(CheckpointError, VsekitError)


# --------------------------------------------------------------------------
# the release files as Python 2.7 wrote them (issue 11, item 4)
#
# Every byte string below is written out by hand; each was checked against what Python 2.7.18's pickle
# and cPickle modules write for the same object (pkl.dump(obj, f) is protocol 0).

OD_PAIRS = [("dog", 2), ("runs", 3), ("grass", 4)]
PY2_ORDERED_DICT = {
    # collections.OrderedDict([('dog', 2), ('runs', 3), ('grass', 4)]): GLOBAL, then REDUCE of a 1-tuple
    # holding a list of [key, value] lists (OrderedDict.__reduce__ in 2.7); pickle memoizes the tuple, cPickle not
    "pickle_p0": (b"ccollections\nOrderedDict\np0\n((lp1\n(lp2\nS'dog'\np3\naI2\naa(lp4\nS'runs'\np5\naI3\naa"
                  b"(lp6\nS'grass'\np7\naI4\naatp8\nRp9\n."),
    "cpickle_p0": (b"ccollections\nOrderedDict\np1\n((lp2\n(lp3\nS'dog'\np4\naI2\naa(lp5\nS'runs'\np6\naI3\naa"
                   b"(lp7\nS'grass'\np8\naI4\naatRp9\n."),
    "pickle_p1": (b"ccollections\nOrderedDict\nq\x00(]q\x01(]q\x02(U\x03dogq\x03K\x02e]q\x04(U\x04runsq\x05K\x03e"
                  b"]q\x06(U\x05grassq\x07K\x04eetq\x08Rq\t."),
    "cpickle_p1": (b"ccollections\nOrderedDict\nq\x01(]q\x02(]q\x03(U\x03dogq\x04K\x02e]q\x05(U\x04runsq\x06K\x03e"
                   b"]q\x07(U\x05grassq\x08K\x04eetRq\t."),
    "pickle_p2": (b"\x80\x02ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(U\x03dogq\x03K\x02e]q\x04(U\x04runsq\x05K"
                  b"\x03e]q\x06(U\x05grassq\x07K\x04ee\x85q\x08Rq\t."),
    "cpickle_p2": (b"\x80\x02ccollections\nOrderedDict\nq\x01]q\x02(]q\x03(U\x03dogq\x04K\x02e]q\x05(U\x04runsq\x06K"
                   b"\x03e]q\x07(U\x05grassq\x08K\x04ee\x85Rq\t."),
}
# {'shape': (3, [1, 2.5]), 'dim': 1024, 'saveto': None, 'name': u'caf\xe9', 'n_words': 5L, 'margin': 0.2,
#  'reload_': False, 'encoder': 'gru'} in Python 2's dict order
PY2_OPTIONS = {
    0: (b"(dp0\nS'shape'\np1\n(I3\n(lp2\nI1\naF2.5\natp3\nsS'dim'\np4\nI1024\nsS'saveto'\np5\nNsS'name'\np6\n"
        b"Vcaf\xe9\np7\nsS'n_words'\np8\nL5L\nsS'margin'\np9\nF0.2\nsS'reload_'\np10\nI00\nsS'encoder'\np11\n"
        b"S'gru'\np12\ns."),
    1: (b"}q\x00(U\x05shapeq\x01(K\x03]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00etq\x03U\x03dimq\x04M\x00\x04"
        b"U\x06savetoq\x05NU\x04nameq\x06X\x05\x00\x00\x00caf\xc3\xa9q\x07U\x07n_wordsq\x08L5L\nU\x06marginq\tG?"
        b"\xc9\x99\x99\x99\x99\x99\x9aU\x07reload_q\nI00\nU\x07encoderq\x0bU\x03gruq\x0cu."),
    2: (b"\x80\x02}q\x00(U\x05shapeq\x01K\x03]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00e\x86q\x03U\x03dimq\x04M"
        b"\x00\x04U\x06savetoq\x05NU\x04nameq\x06X\x05\x00\x00\x00caf\xc3\xa9q\x07U\x07n_wordsq\x08\x8a\x01\x05"
        b"U\x06marginq\tG?\xc9\x99\x99\x99\x99\x99\x9aU\x07reload_q\n\x89U\x07encoderq\x0bU\x03gruq\x0cu."),
}
PY2_OPTIONS_VALUE = {"shape": (3, [1, 2.5]), "dim": 1024, "saveto": None, "name": "café", "n_words": 5,
                     "margin": 0.2, "reload_": False, "encoder": "gru"}


@pytest.mark.parametrize("kind", list(PY2_ORDERED_DICT))
def test_reads_a_python2_ordered_dict(tmp_path, kind):
    import collections

    path = tmp_path / "d.pkl"
    path.write_bytes(PY2_ORDERED_DICT[kind])
    got = safe_pickle.read_pickle(path)
    assert type(got) is collections.OrderedDict and list(got.items()) == OD_PAIRS
    assert all(type(k) is str for k in got)


def test_reads_an_empty_ordered_dict_and_python3_ones(tmp_path):
    import collections

    path = tmp_path / "d.pkl"
    path.write_bytes(b"ccollections\nOrderedDict\np0\n((ltp1\nRp2\n.")  # Python 2.7, OrderedDict(), protocol 0
    assert safe_pickle.read_pickle(path) == collections.OrderedDict()
    for protocol in range(6):  # Python 3 writes OrderedDict() then SETITEMS
        path.write_bytes(pickle.dumps(collections.OrderedDict(OD_PAIRS), protocol=protocol))
        got = safe_pickle.read_pickle(path)
        assert type(got) is collections.OrderedDict and list(got.items()) == OD_PAIRS, protocol


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_reads_python2_options(tmp_path, protocol):
    path = tmp_path / "o.pkl"
    path.write_bytes(PY2_OPTIONS[protocol])
    got = safe_pickle.read_pickle(path)
    assert got == PY2_OPTIONS_VALUE
    assert [type(got[k]) for k in ("reload_", "n_words", "saveto", "shape")] == [bool, int, type(None), tuple]


# The hand-computed model of HAND_PARAMS, with both pickles as Python 2.7 pkl.dump wrote them (protocol 0):
# options {'dim': 2, 'dim_word': 2, 'dim_image': 3, 'encoder': 'gru', 'n_words': 4, 'margin': 0.2,
# 'reload_': False, 'data': 'f8k'} and OrderedDict([('<eos>', 0), ('UNK', 1), ('a', 2), ('b', 3)]).
HAND_OPTIONS_P0 = (b"(dp0\nS'dim_word'\np1\nI2\nsS'reload_'\np2\nI00\nsS'dim_image'\np3\nI3\nsS'encoder'\np4\n"
                   b"S'gru'\np5\nsS'n_words'\np6\nI4\nsS'margin'\np7\nF0.2\nsS'dim'\np8\nI2\nsS'data'\np9\n"
                   b"S'f8k'\np10\ns.")
HAND_DICT_P0 = (b"ccollections\nOrderedDict\np0\n((lp1\n(lp2\nS'<eos>'\np3\naI0\naa(lp4\nS'UNK'\np5\naI1\naa"
                b"(lp6\nS'a'\np7\naI2\naa(lp8\nS'b'\np9\naI3\naatp10\nRp11\n.")


def test_hand_computed_model_from_protocol0_files(tmp_path):
    npz = _hand_files(tmp_path / "p0", "gru")
    npz.with_name("hand.npz.pkl").write_bytes(HAND_OPTIONS_P0)
    npz.with_name("hand.npz.dictionary.pkl").write_bytes(HAND_DICT_P0)
    model = vsekit.load_model(npz)
    assert model.vocab.words == ["<eos>", "<unk>", "a", "b"] and model.n_words == 4
    np.testing.assert_allclose(vsekit.encode_sentences(model, ["a b"])[0], HAND_SENTENCE, atol=1e-6)
    np.testing.assert_allclose(vsekit.encode_images(model, np.array([[1.0, 2.0, -1.0]]))[0], HAND_IMAGE, atol=1e-6)


# --------------------------------------------------------------------------
# hostile pickles: every other global, every other call, and the limits

HOSTILE = {
    # (bytes, what the one-line message names)
    "os_system_p0": (b"cos\nsystem\n(S'touch pwned'\ntR.", "global os.system"),
    "posix_system_p0": (b"cposix\nsystem\np0\n(S'touch pwned'\np1\ntp2\nRp3\n.", "global posix.system"),
    "os_system_p2": (b"\x80\x02cos\nsystem\nU\x0btouch pwned\x85R.", "global os.system"),
    "other_collections": (b"ccollections\ndefaultdict\n(tR.", "global collections.defaultdict"),
    "ordered_dict_other_module": (b"cmy_collections\nOrderedDict\n(tR.", "global my_collections.OrderedDict"),
    "reconstructor": (b"ccopy_reg\n_reconstructor\n(ccollections\nOrderedDict\nc__builtin__\ndict\n(dtR.",
                      "global copy_reg._reconstructor"),
    "stack_global": (b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x05touch\x85R.", "global os.system"),
    "reduce_on_a_list": (b"(lp0\n(tR.", "opcode REDUCE on a list"),
    "reduce_on_a_string": (b"S'os.system'\n(S'x'\ntR.", "opcode REDUCE on a bytes"),
    "ordered_dict_of_a_string": (b"ccollections\nOrderedDict\n(S'abc'\ntR.", "not a list of pairs"),
    "ordered_dict_of_triples": (b"ccollections\nOrderedDict\n((lp0\n(I1\nI2\nI3\ntatR.", "[key, value] pairs"),
    "ordered_dict_two_args": (b"ccollections\nOrderedDict\n((l(ltR.", "other than one list of pairs"),
    "ordered_dict_uncalled": (b"(lp0\nccollections\nOrderedDict\na.", "collections.OrderedDict left uncalled"),
    "ordered_dict_then_build": (b"ccollections\nOrderedDict\n(tR(dS'x'\nI1\nsb.", "opcode BUILD"),
    "inst": (b"(S'touch pwned'\nios\nsystem\n.", "opcode INST"),
    "obj": (b"(cos\nsystem\nS'x'\no.", "global os.system"),
    "newobj": (b"\x80\x02ccollections\nOrderedDict\n)\x81.", "opcode NEWOBJ"),
    "float_key": (b"(dp0\nF0.5\nI1\ns.", "dict key of type float"),
    "tuple_key": (b"\x80\x02}K\x01K\x02\x86K\x03s.", "dict key of type tuple"),
    "huge_int_key": (b"(dp0\nL2305843009213693951L\nI1\ns.", "dict key of type int"),
    "huge_memo_index": (b"(lp2305843009213693951\n.", "opcode PUT"),
    "long_beyond_64_bits": (b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", "integer beyond 64 bits"),
    "same_key_twice": (b"\x80\x02}(U\x01aK\x01X\x01\x00\x00\x00aK\x02u.", "key 'a' appears twice"),
    "deep": (b"\x80\x02" + b"]" * 150 + b"a" * 149 + b".", "nested deeper than 100"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_refuses_hostile_pickles_with_one_line(tmp_path, kind, monkeypatch):
    import subprocess

    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: calls.append(a))
    data, names = HOSTILE[kind]
    path = tmp_path / f"{kind}.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        safe_pickle.read_pickle(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused: ") and names in msg, msg
    assert "\n" not in msg and not calls and not (tmp_path / "pwned").exists()


def test_the_work_a_pickle_may_take_is_bounded(tmp_path, monkeypatch):
    # x0 = []; x(i+1) = [xi, xi]: 30 levels in 200 bytes, 2**31 objects when read out as a tree
    blowup = b"\x80\x02]" + b"q\x000](h\x00h\x00e" * 30 + b"."
    # one memoized list of 100 pairs, then OrderedDict of it 100 times: 10,000 pairs from ~700 bytes
    pairs = b"".join(b"]" + b"(X\x01\x00\x00\x00" + bytes([65 + i % 26]) + b"K" + bytes([i]) + b"e" for i in range(100))
    amplify = (b"\x80\x02](" + pairs + b"eq\x00" + b"0ccollections\nOrderedDict\nh\x00\x85R" * 100 + b".")
    big = pickle.dumps(list(range(300)), protocol=2)
    for name, data in (("blowup", blowup), ("amplify", amplify), ("big", big)):
        (tmp_path / f"{name}.pkl").write_bytes(data)
    # each is read within generous limits ... (the blow-up is not: 2**31 objects)
    monkeypatch.setattr(safe_pickle, "MAX_PICKLE_OBJECTS", 100_000)
    safe_pickle.read_pickle(tmp_path / "amplify.pkl")
    assert safe_pickle.read_pickle(tmp_path / "big.pkl") == list(range(300))
    with pytest.raises(CheckpointError, match=r"blowup.pkl: refused: more than 100000 objects"):
        safe_pickle.read_pickle(tmp_path / "blowup.pkl")
    # ... and each limit bites
    monkeypatch.setattr(safe_pickle, "MAX_PICKLE_OPCODES", 5000)
    with pytest.raises(CheckpointError, match=r"amplify.pkl: refused: more than 5000 opcodes and pairs"):
        safe_pickle.read_pickle(tmp_path / "amplify.pkl")
    monkeypatch.setattr(safe_pickle, "MAX_PICKLE_BYTES", len(big) - 1)
    with pytest.raises(CheckpointError, match=rf"big.pkl: refused: the pickle is {len(big)} bytes, more than"):
        safe_pickle.read_pickle(tmp_path / "big.pkl")


def test_the_real_limits_stop_a_blowup_quickly(tmp_path):
    import time

    assert (safe_pickle.MAX_PICKLE_BYTES, safe_pickle.MAX_PICKLE_OPCODES, safe_pickle.MAX_PICKLE_OBJECTS,
            safe_pickle.MAX_PICKLE_DEPTH) == (64 * 2**20, 2_000_000, 1_000_000, 100)
    path = tmp_path / "blowup.pkl"
    path.write_bytes(b"\x80\x02]" + b"q\x000](h\x00h\x00e" * 60 + b".")  # 2**61 objects as a tree
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="more than 1000000 objects"):
        safe_pickle.read_pickle(path)
    assert time.perf_counter() - start < 30


def test_damaged_pickles_give_one_checkpoint_error_line(tmp_path):
    """Random damage to the pickles above: read, or refused with one CheckpointError line; nothing else escapes."""
    import random

    seeds = [*PY2_ORDERED_DICT.values(), *PY2_OPTIONS.values(), HAND_OPTIONS_P0, HAND_DICT_P0,
             *(data for data, _ in HOSTILE.values())]
    rng = random.Random(0)
    path = tmp_path / "damaged.pkl"
    outcomes = set()
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            j = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[j] = rng.randrange(256)
            else:
                data.insert(j, rng.choice(b"()]}laspRcqhgIKSVUtu.0N\x85\n"))
        path.write_bytes(bytes(data))
        try:
            safe_pickle.read_pickle(path)
            outcomes.add("read")
        except CheckpointError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc), str(exc)
            outcomes.add(str(exc).split(": ")[1])
    assert {"read", "refused", "not a readable pickle"} <= outcomes


def test_cli_refuses_a_hostile_dictionary_in_one_line(tmp_path):
    from vsekit.cli import add_plugin_commands, cli

    add_plugin_commands()
    npz, *_ = make_reference(tmp_path)
    dict_path = npz.with_name(npz.name + ".dictionary.pkl")
    dict_path.write_bytes(HOSTILE["os_system_p0"][0])
    res = CliRunner().invoke(cli, ["import-legacy", str(npz), "-o", str(tmp_path / "m")], obj={})
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {dict_path}: refused: global os.system")
    assert not (tmp_path / "m" / "best.json").exists()


# --------------------------------------------------------------------------
# the reference's real files: ../shared/cases/legacy-ordereddict

REPO = Path(__file__).resolve().parent.parent
SHARED_CASES = REPO.parent / "shared" / "cases"


def shared_case(name: str) -> Path:
    """A folder of ../shared/cases; absent, the test skips, or fails under CI=true (CI has ../shared)."""
    folder = SHARED_CASES / name
    if not folder.is_dir():
        from vsekit import testing

        testing.missing_test_input(f"{folder} not found (the shared cases live in ../shared next to the repository)")
    return folder


def test_imports_the_reference_ordered_dict_case(tmp_path, monkeypatch):
    import shutil

    from vsekit.cli import add_plugin_commands, cli

    case = shared_case("legacy-ordereddict")
    for name in ("ref.npz", "ref.npz.pkl", "ref.npz.dictionary.pkl"):
        shutil.copy(case / name, tmp_path / name)
    assert (tmp_path / "ref.npz.dictionary.pkl").read_bytes().startswith(b"ccollections\nOrderedDict\n")
    add_plugin_commands()
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["import-legacy", "ref.npz", "-o", "out"], obj={})
    assert res.exit_code == 0, res.output
    model = vsekit.load_model(tmp_path / "out")

    # the case's README: OrderedDict([('dog', 2), ('runs', 3), ('grass', 4)]); its options: n_words 5, dim 4
    worddict, n_words = dict(OD_PAIRS), 5
    with np.load(tmp_path / "ref.npz") as z:
        P = {k: z[k] for k in z.files}
    assert P["Wemb"].shape == (n_words, 4) and P["ff_image_W"].shape == (6, 4)
    captions = ["dog runs", "grass", "dog runs on the grass", "runs runs dog", "zebra"]
    want = np.stack([ref_encode_sentence(P, worddict, n_words, c, "gru") for c in captions])
    np.testing.assert_allclose(vsekit.encode_sentences(model, captions), want, atol=1e-5)
    feats = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    np.testing.assert_allclose(vsekit.encode_images(model, feats), ref_encode_image(P, feats), atol=1e-5)
    assert model.vocab.words == ["<eos>", "<unk>", "dog", "runs", "grass"]


# --------------------------------------------------------------------------
# a native vsekit GRU model, exported in the reference's format and read back


def test_exported_native_gru_matches_the_reference_equations(tmp_path):
    model = _native("gru", dim_word=3)  # dim 4, words <eos> <unk> dog cat, tokenizer "regex", no <eos> step
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.8, 0.8, size=tuple(p.shape)).astype(np.float32)))
        model.sentence_encoder.rnn.bias_hh_l0.zero_()  # the reference has no recurrent biases
    out = legacy.export_legacy(model, tmp_path / "native.npz")

    # the exported files, read without vsekit (they are this test's own files: the stdlib unpickler is safe here)
    with np.load(out) as z:
        P = {k: z[k] for k in z.files}
    worddict = pickle.loads(out.with_name("native.npz.dictionary.pkl").read_bytes())
    options = pickle.loads(out.with_name("native.npz.pkl").read_bytes())
    assert worddict == {"<eos>": 0, "UNK": 1, "dog": 2, "cat": 3}
    assert (options["dim"], options["dim_word"], options["n_words"], options["encoder"]) == (4, 3, 4, "gru")
    captions = ["dog cat", "cat", "cat dog dog", "bird dog"]
    want = np.stack([ref_encode_sentence(P, worddict, 4, c, "gru") for c in captions])

    # the native model's own GRU on the same steps (the words, then <eos>) gives the reference's vectors ...
    model.append_eos = True  # the model's tokenizer cuts text; the <eos> step is the model's own option
    native = vsekit.encode_sentences(model, captions)
    model.append_eos = False
    np.testing.assert_allclose(native, want, atol=1e-5)
    # ... and so does the model read back from the reference's files, on plain captions
    again = vsekit.load_model(out)
    np.testing.assert_allclose(vsekit.encode_sentences(again, captions), want, atol=1e-5)
    feats = rng.normal(size=(3, 3)).astype(np.float32)
    np.testing.assert_allclose(vsekit.encode_images(again, feats), ref_encode_image(P, feats), atol=1e-5)
    np.testing.assert_allclose(vsekit.encode_images(model, feats), ref_encode_image(P, feats), atol=1e-5)
