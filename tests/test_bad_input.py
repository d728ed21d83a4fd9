"""Bad input, table-driven: every case runs the real CLI (in-process, exceptions not caught) and must end in
exit status 2 with one message naming the file and the field or line, no traceback, and nothing written.

The harness (``Env``, ``invoke``, ``assert_refused``, ``snapshot``, ``cases``) is ``tests/bad_input_harness.py``;
other ``tests/test_bad_input_*.py`` files add their own case tables with it.
"""

from __future__ import annotations

import json
import shutil
import traceback

import numpy as np
import pytest
from bad_input_harness import assert_refused, cases, check_case, edit_json, fix_sha, invoke, snapshot
from click.testing import CliRunner
from conftest import REPO, tiny_spec_text

from vsekit.cli import cli
from vsekit.errors import SpecError
from vsekit.io import sha256_file

CASES, case = cases()


@pytest.mark.parametrize("make", CASES)
def test_bad_input(make, env):
    check_case(make, env)


# --------------------------------------------------------------------------- spec files


@case
def spec_not_toml(e):
    e.write_spec(text='name = "x"\n[data\ntype = "precomp"\n')
    return ["run", str(e.spec), "--out", str(e.out)], [e.spec, "not valid TOML", "line 2"]


@case
def spec_not_utf8(e):
    e.spec.write_bytes(b'name = "caf\xe9"\n')
    return ["validate", str(e.spec)], [e.spec, "not UTF-8"]


@case
def spec_missing_file(e):
    return ["run", str(e.root / "nope.toml"), "--out", str(e.out)], [e.root / "nope.toml", "no such spec file"]


@case
def spec_wrong_type_str_for_int(e):
    return e.run(change=lambda d: d["train"].update(max_epochs="two")), [f"{e.spec}: [train] max_epochs:", "'two'"]


@case
def spec_wrong_type_float_for_int(e):
    return e.run(change=lambda d: d["model"].update(dim=1.5)), [f"{e.spec}: [model] dim:", "1.5"]


@case
def spec_wrong_type_str_for_float(e):
    return e.run(change=lambda d: d["loss"].update(margin="big")), [f"{e.spec}: [loss] margin:", "'big'"]


@case
def spec_wrong_type_bool_for_int(e):
    return e.run(change=lambda d: d["train"].update(batch_size=True)), [f"{e.spec}: [train] batch_size:"]


@case
def spec_section_not_a_table(e):
    return e.run(change=lambda d: d.update(train=5)), [f"{e.spec}: [train]", "expected a table"]


@case
def spec_unknown_key(e):
    return e.run(change=lambda d: d["train"].update(lrr=0.1)), [f"{e.spec}: [train] lrr:", "did you mean 'lr'"]


@case
def spec_unknown_component_key(e):
    return e.run(change=lambda d: d["loss"].update(marginn=0.1)), [f"{e.spec}: [loss] marginn:", "unknown key"]


@case
def spec_unknown_section(e):
    return e.run(change=lambda d: d.update(trian={"lr": 1.0})), [f"{e.spec}: [trian]", "unknown section"]


@case
def spec_unknown_loss(e):
    return e.run(change=lambda d: d["loss"].update(type="contrastiv")), [f"{e.spec}: [loss] type:", "contrastive"]


@case
def spec_unknown_sentence_encoder(e):
    return (e.run(change=lambda d: d["model"]["sentence_encoder"].update(type="lstm")),
            [f"{e.spec}: [model.sentence_encoder] type:", "lstm"])


@case
def spec_unknown_dataset_reader(e):
    return e.run(change=lambda d: d["data"].update(type="cocoa")), [f"{e.spec}: [data] type:", "coco"]


@case
def spec_missing_data_section(e):
    return e.run(change=lambda d: d.pop("data")), [f"{e.spec}: [data]", "missing section"]


@case
def spec_missing_loss_section(e):
    return e.run(change=lambda d: d.pop("loss")), [f"{e.spec}: [loss]", "missing section"]


@case
def spec_missing_component_type(e):
    return e.run(change=lambda d: d["loss"].pop("type")), [f"{e.spec}: [loss]", "type"]


@case
def spec_zero_dim(e):
    return e.run(change=lambda d: d["model"].update(dim=0)), [f"{e.spec}: [model] dim:", "> 0"]


@case
def spec_negative_dim(e):
    return e.run(change=lambda d: d["model"].update(dim=-5)), [f"{e.spec}: [model] dim:", "-5"]


@case
def spec_batch_size_one(e):
    return e.run(change=lambda d: d["train"].update(batch_size=1)), [f"{e.spec}: [train] batch_size:", ">= 2"]


@case
def spec_zero_epochs(e):
    return e.run(change=lambda d: d["train"].update(max_epochs=0)), [f"{e.spec}: [train] max_epochs:"]


@case
def spec_negative_margin(e):
    return e.run(change=lambda d: d["loss"].update(margin=-0.1)), [f"{e.spec}: [loss] margin:", "-0.1"]


@case
def spec_lr_gamma_out_of_range(e):
    return e.run(change=lambda d: d["train"].update(lr_gamma=1.5)), [f"{e.spec}: [train] lr_gamma:", "[0.0, 1.0]"]


@case
def spec_dropout_out_of_range(e):
    return (e.run(change=lambda d: d["model"]["sentence_encoder"].update(dropout=0.95)),
            [f"{e.spec}: [model.sentence_encoder] dropout:"])


@case
def spec_zero_temperature(e):
    return (e.run(change=lambda d: d.update(loss={"type": "infonce", "temperature": 0.0})),
            [f"{e.spec}: [loss] temperature:"])


@case
def spec_bow_dim_word_not_dim(e):
    return (e.run(change=lambda d: d["model"].update(sentence_encoder={"type": "bow", "dim_word": 16})),
            [f"{e.spec}: [model.sentence_encoder] dim_word:", "model.dim (32)"])


@case
def spec_negative_save_freq(e):
    return e.run(change=lambda d: d["train"].update(save_freq=-1)), [f"{e.spec}: [train] save_freq:"]


@case
def spec_zero_folds(e):
    return e.run(change=lambda d: d.update(eval={"folds": 0})), [f"{e.spec}: [eval] folds:"]


@case
def spec_unknown_device(e):
    return e.run(change=lambda d: d["train"].update(device="gpu")), [f"{e.spec}: [train] device:"]


@case
def spec_absent_cuda_device(e):
    return e.run(change=lambda d: d["train"].update(device="cuda:99")), [f"{e.spec}: [train] device:", "cuda:99"]


@case
def spec_bad_name(e):
    return e.run(change=lambda d: d.update(name=5)), [f"{e.spec}: [name]", "non-empty string"]


@case
def spec_missing_import(e):
    return (e.run(change=lambda d: d.update(imports=["no_such_module_xyz"])),
            [f"{e.spec}: [imports]", "no_such_module_xyz"])


@case
def spec_unknown_eval_split(e):
    return e.run(change=lambda d: d.update(eval={"split": "val"})), [f"{e.spec}: [eval] split:", "'val'", "dev"]


@case
def spec_unknown_valid_split(e):
    return e.run(change=lambda d: d["train"].update(valid_split="validation")), [f"{e.spec}: [train] valid_split:"]


@case
def spec_folds_do_not_divide(e):
    return e.run(change=lambda d: d.update(eval={"folds": 3})), [f"{e.spec}: [eval] folds:", "10 'test' images"]


# --------------------------------------------------------------------------- data files


@case
def data_folder_missing(e):
    return e.run(change=lambda d: d["data"].update(dir=str(e.root / "nowhere"))), [e.root / "nowhere", "no such"]


@case
def data_captions_missing(e):
    e.caps("dev").unlink()
    return e.run(), [e.caps("dev"), "no such file"]


@case
def data_features_missing(e):
    e.npy("train").unlink()
    return e.run(), [e.npy("train"), "no such file"]


@case
def data_captions_empty(e):
    e.caps("test").write_text("")
    return e.run(), [e.caps("test"), "empty file"]


@case
def data_features_empty(e):
    e.npy("train").write_bytes(b"")
    return e.run(), [e.npy("train"), "not a readable .npy"]


@case
def data_count_mismatch(e):
    lines = e.caps("train").read_text().splitlines()[:-3]
    e.caps("train").write_text("\n".join(lines) + "\n")
    return e.run(), [e.caps("train"), e.npy("train"), "97 captions", "20 feature rows"]


@case
def data_three_captions_per_image(e):
    lines = e.caps("dev").read_text().splitlines()
    e.caps("dev").write_text("\n".join(lines[i] for i in range(50) if i % 5 < 3) + "\n")
    return e.run(), [e.caps("dev"), "30 captions", "10 feature rows"]


@case
def data_seven_captions_per_image(e):
    lines = e.caps("test").read_text().splitlines()
    e.caps("test").write_text("\n".join(lines + lines[:20]) + "\n")
    return e.run(), [e.caps("test"), "70 captions", "10 feature rows"]


@case
def data_nan_features(e):
    f = np.load(e.npy("dev"))
    f[3, 5] = np.nan
    np.save(e.npy("dev"), f)
    return e.run(), [e.npy("dev"), "NaN or inf", "first row 3"]


@case
def data_inf_features(e):
    f = np.load(e.npy("train"))
    f[0, 0] = np.inf
    np.save(e.npy("train"), f)
    return e.run(), [e.npy("train"), "NaN or inf", "first row 0"]


@case
def data_feature_width_differs_between_splits(e):
    np.save(e.npy("dev"), np.load(e.npy("dev"))[:, :1000])
    return e.run(), [e.npy("dev"), "1000-d", "1280-d"]


@case
def data_captions_not_utf8(e):
    raw = e.caps("test").read_bytes().split(b"\n")
    raw[3] = b"a caf\xe9 on the corner"
    e.caps("test").write_bytes(b"\n".join(raw))
    return e.run(), [e.caps("test"), "line 4", "not UTF-8"]


@case
def data_empty_caption_line(e):
    lines = e.caps("test").read_text().splitlines()
    lines[6] = "   "
    e.caps("test").write_text("\n".join(lines) + "\n")
    return e.run(), [e.caps("test"), "line 7", "empty caption"]


@case
def data_features_one_dimensional(e):
    np.save(e.npy("train"), np.zeros(20, dtype=np.float32))
    return e.run(), [e.npy("train"), "2-D"]


@case
def data_features_pickled_objects(e):
    np.save(e.npy("train"), np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    return e.run(), [e.npy("train"), "not a readable .npy"]


@case
def data_features_integer_dtype(e):
    np.save(e.npy("dev"), np.ones((10, 1280), dtype=np.int32))
    return e.run(), [e.npy("dev"), "dtype int32"]


@case
def data_all_captions_over_maxlen_w(e):
    return e.run(change=lambda d: d["train"].update(maxlen_w=1)), [e.npy("train"), "maxlen_w = 1"]


def flickr(e, captions_csv: str | None = None, split_lines: dict | None = None, ids: list[str] | None = None):
    """A small flickr8k layout (12 images: 6/3/3) with precomputed 8-d features; returns the run argv."""
    root = e.root / "f8k"
    (root / "splits").mkdir(parents=True)
    names = [f"im{i}.jpg" for i in range(12)]
    rows = ["image,caption"] + [f"{n},a dog number {i} runs {k}" for i, n in enumerate(names) for k in range(5)]
    (root / "captions.txt").write_text(captions_csv if captions_csv is not None else "\n".join(rows) + "\n")
    split_names = {"train": names[:6], "dev": names[6:9], "test": names[9:]}
    split_names.update(split_lines or {})
    for s, lst in split_names.items():
        (root / "splits" / f"{s}.txt").write_text("\n".join(lst) + "\n")
    feats = root / "feats"
    feats.mkdir()
    np.save(feats / "all_ims.npy", np.random.default_rng(0).standard_normal((12, 8)).astype(np.float32))
    (feats / "all_ids.txt").write_text("\n".join(ids if ids is not None else names) + "\n")
    return e.run(change=lambda d: d.update(data={"type": "flickr8k", "root": str(root),
                                                 "features": {"type": "precomputed", "dir": str(feats)}}))


@case
def flickr_duplicate_image_ids(e):
    names = [f"im{i}.jpg" for i in range(6)] + ["im2.jpg"]
    return flickr(e, split_lines={"train": names}), [e.root / "f8k" / "splits" / "train.txt", "duplicate", "im2.jpg"]


@case
def flickr_bad_header(e):
    return flickr(e, captions_csv="img,text\nim0.jpg,a dog\n"), [e.root / "f8k" / "captions.txt", "header"]


@case
def flickr_row_with_three_fields(e):
    text = "image,caption\nim0.jpg,a dog\nim0.jpg,a dog\nim0.jpg,a,dog\n"
    return flickr(e, captions_csv=text), [e.root / "f8k" / "captions.txt", "line 4", "3"]


@case
def flickr_feature_ids_count_mismatch(e):
    argv = flickr(e, ids=[f"im{i}.jpg" for i in range(11)])
    return argv, [e.root / "f8k" / "feats" / "all_ids.txt", "11 ids", "12 rows"]


@case
def flickr_duplicate_feature_ids(e):
    argv = flickr(e, ids=[f"im{i}.jpg" for i in range(11)] + ["im0.jpg"])
    return argv, [e.root / "f8k" / "feats" / "all_ids.txt", "'im0.jpg'", "twice"]


@case
def flickr_captions_not_utf8(e):
    argv = flickr(e)
    p = e.root / "f8k" / "captions.txt"
    p.write_bytes(p.read_bytes().replace(b"dog number 3", b"d\xf6g number 3"))
    return argv, [p, "not UTF-8"]


# --------------------------------------------------------------------------- model files


@case
def ckpt_truncated_safetensors(e):
    meta = e.ckpt()
    w = meta.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:-100])
    return ["eval", str(meta), "-q"], [w, "checksum mismatch"]


@case
def ckpt_truncated_safetensors_with_matching_checksum(e):
    meta = e.ckpt()
    w = meta.with_suffix(".safetensors")
    w.write_bytes(w.read_bytes()[:-100])
    fix_sha(meta)
    return ["eval", str(meta), "-q"], [w, "cannot read safetensors"]


@case
def ckpt_safetensors_header_garbage(e):
    meta = e.ckpt()
    w = meta.with_suffix(".safetensors")
    w.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + w.read_bytes()[24:])
    fix_sha(meta)
    return ["eval", str(meta), "-q"], [w, "cannot read safetensors"]


@case
def ckpt_weights_missing(e):
    meta = e.ckpt()
    meta.with_suffix(".safetensors").unlink()
    return ["eval", str(meta), "-q"], [meta.with_suffix(".safetensors"), "weights file missing"]


@case
def ckpt_json_missing_key(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m.pop("vocab"))
    return ["eval", str(meta), "-q"], [meta, "missing key(s) vocab"]


@case
def ckpt_json_not_json(e):
    meta = e.ckpt()
    meta.write_text('{"format": "vsekit-checkpoint/1", ')
    return ["eval", str(meta), "-q"], [meta, "not a readable JSON checkpoint"]


@case
def ckpt_json_wrong_type(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m.update(dim="32"))
    return ["eval", str(meta), "-q"], [meta, "dim: expected an integer > 0", "'32'"]


@case
def ckpt_json_vocab_not_a_list(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m.update(vocab="the a of"))
    return ["eval", str(meta), "-q"], [meta, "vocab: expected a list of words"]


@case
def ckpt_json_spec_not_a_table(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m.update(spec=[1, 2]))
    return ["eval", str(meta), "-q"], [meta, "spec: expected a table"]


@case
def ckpt_json_weights_outside_folder(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m.update(weights="../other/best.safetensors"))
    return ["eval", str(meta), "-q"], [meta, "'weights' must be a file name"]


@case
def ckpt_json_unknown_encoder(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m["spec"]["model"]["sentence_encoder"].update(type="nope"))
    return ["eval", str(meta), "-q"], [meta, "model.sentence_encoder", "'nope'"]


@case
def ckpt_weights_swapped_other_dim(e):
    meta = e.ckpt()
    other = e.other_ckpt(dim=16)
    shutil.copy(other.with_suffix(".safetensors"), meta.with_suffix(".safetensors"))
    return ["eval", str(meta), "-q"], [meta.with_suffix(".safetensors"), "checksum mismatch"]


@case
def ckpt_weights_swapped_other_dim_checksum_fixed(e):
    meta = e.ckpt()
    other = e.other_ckpt(dim=16)
    shutil.copy(other.with_suffix(".safetensors"), meta.with_suffix(".safetensors"))
    fix_sha(meta)
    return ["eval", str(meta), "-q"], [meta.with_suffix(".safetensors"), "do not fit", "dim"]


@case
def ckpt_weights_swapped_other_vocabulary_checksum_fixed(e):
    meta = e.ckpt()
    other = e.other_ckpt(dim=32, reverse_vocab=True)
    shutil.copy(other.with_suffix(".safetensors"), meta.with_suffix(".safetensors"))
    fix_sha(meta)
    return ["eval", str(meta), "-q"], [meta.with_suffix(".safetensors"), "do not fit", "another vocabulary"]


@case
def ckpt_json_dim_edited(e):
    meta = e.ckpt()
    edit_json(meta, lambda m: m.update(dim=64))
    return ["eval", str(meta), "-q"], [meta.with_suffix(".safetensors"), "do not fit", "dim"]


@case
def ckpt_nothing_there(e):
    return ["eval", str(e.root / "data"), "-q"], [e.root / "data", "no vsekit checkpoint here"]


@case
def eval_data_of_another_width(e):
    meta = e.ckpt()
    np.save(e.npy("test"), np.load(e.npy("test"))[:, :1000])
    spec = e.write_spec()
    return (["eval", str(meta), "--data", str(spec), "-q", "-o", str(e.root / "m.json")],
            [e.npy("test"), "1000-d", "1280-d"])


# --------------------------------------------------------------------------- command-line arguments


@case
def cli_set_without_equals(e):
    return ["validate", str(e.write_spec()), "--set", "train.lr"], ["--set 'train.lr'", "KEY=VALUE"]


@case
def cli_set_into_a_value(e):
    return ["run", str(e.write_spec()), "--set", "train.lr.x=1", "--out", str(e.out)], ["train.lr is not a table"]


@case
def cli_set_wrong_type(e):
    return e.run("--set", "train.max_epochs=two"), [f"{e.spec}: [train] max_epochs:"]


@case
def cli_set_unknown_key(e):
    return e.run("--set", "train.nope=1"), [f"{e.spec}: [train] nope:", "unknown key"]


@case
def cli_seeds_zero(e):
    return e.run("--seeds", "0"), ["'--seeds'", "0"]


@case
def cli_eval_unknown_split(e):
    meta = e.ckpt()
    return ["eval", str(meta), "--split", "val", "-q"], ["split 'val'", meta, "dev"]


@case
def cli_eval_folds_zero(e):
    meta = e.ckpt()
    return ["eval", str(meta), "--folds", "0", "-q"], ["'--folds'"]


@case
def cli_out_is_a_file(e):
    e.out.write_text("x")
    argv = e.run()
    e.out.unlink()
    (e.root / "outfile").write_text("x")
    argv[argv.index(str(e.out))] = str(e.root / "outfile")
    return argv, [e.root / "outfile", "is a file"]


@case
def cli_out_not_empty(e):
    (e.root / "mine").mkdir()
    (e.root / "mine" / "keep.txt").write_text("mine")
    argv = e.run()
    argv[argv.index(str(e.out))] = str(e.root / "mine")
    return argv, [e.root / "mine", "--force"]


@case
def cli_force_on_a_foreign_folder(e):
    (e.root / "mine").mkdir()
    (e.root / "mine" / "keep.txt").write_text("mine")
    argv = e.run("--force")
    argv[argv.index(str(e.out))] = str(e.root / "mine")
    return argv, [e.root / "mine", "not a vsekit run folder"]


@case
def cli_resume_without_a_run(e):
    return e.run("--resume"), [e.out, "nothing to resume"]


@case
def cli_resume_and_force(e):
    return e.run("--resume", "--force"), ["--resume", "--force"]


@case
def cli_resume_changed_spec(e):
    run = e.run_copy()
    e.spec.write_text(tiny_spec_text(e.small_data, train={"lr": 0.001}))
    return (["run", str(e.spec), "--out", str(run), "--resume", "-q"],
            [run, "cannot resume", "train.lr: 0.002 -> 0.001"])


@case
def cli_resume_corrupt_state(e):
    run = e.run_copy()
    (run / "results.json").unlink()  # as if killed after training, before the test evaluation
    w = run / "last.safetensors"
    data = bytearray(w.read_bytes())
    data[-5] ^= 1
    w.write_bytes(bytes(data))
    e.spec.write_text(tiny_spec_text(e.small_data))
    return ["run", str(e.spec), "--out", str(run), "--resume", "-q"], [w, "checksum mismatch"]


@case
def cli_resume_changed_data(e):
    run = e.run_copy()
    (run / "results.json").unlink()
    e.spec.write_text(tiny_spec_text(e.small_data))
    prov = json.loads((run / "provenance.json").read_text())
    caps = next(f for f in prov["data_files"] if f.endswith("train_caps.txt"))
    prov["data_files"][caps] = "0" * 64  # the run read other bytes than the file now holds
    (run / "provenance.json").write_text(json.dumps(prov))
    return ["run", str(e.spec), "--out", str(run), "--resume", "-q"], [run, "cannot resume", "train_caps.txt changed"]


# --------------------------------------------------------------------------- not errors: must not crash


def test_ten_thousand_word_captions_are_skipped_in_training_and_evaluated_in_test(env):
    """Over ``maxlen_w`` in training: skipped and counted; in the validation and test splits: encoded."""
    long = " ".join(["dog"] * 10_000)
    for split, line in (("train", 4), ("dev", 2), ("test", 0)):
        lines = env.caps(split).read_text().splitlines()
        lines[line] = long
        env.caps(split).write_text("\n".join(lines) + "\n")
    result = invoke(env.run(), env.root)
    assert result.exit_code == 0, result.output
    results = json.loads((env.out / "results.json").read_text())
    assert results["skipped_over_maxlen_w"] == 1 and results["train_captions"] == 99
    start = json.loads((env.out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["skipped_over_maxlen_w"] == 1
    assert np.isfinite(results["test"]["rsum"])


def test_debug_shows_the_traceback(env):
    argv = env.run(change=lambda d: d["model"].update(dim=0))
    result = CliRunner().invoke(cli, ["--debug", *argv], obj={})
    assert isinstance(result.exception, SpecError)
    text = "".join(traceback.format_exception(*result.exc_info))
    assert "Traceback" in text and f"{env.spec}: [model] dim:" in text
    assert not env.out.exists()


def test_table_is_large_enough():
    assert len(CASES) >= 40


def test_no_code_from_data():
    """Static check of the library and plugin sources: no unpickling outside vsekit.legacy's restricted
    unpickler, ``np.load`` always with ``allow_pickle=False``, ``torch.load`` only with ``weights_only=True``."""
    import re

    sources = [p for p in list((REPO / "vsekit").rglob("*.py")) + list((REPO / "plugins").rglob("*.py"))
               if "tests" not in p.relative_to(REPO).parts]
    assert len(sources) > 20
    for path in sources:
        text = path.read_text(encoding="utf-8")
        for call in re.finditer(r"\bnp\.load\(([^)]*)\)", text):
            assert "allow_pickle=False" in call.group(1), (path, call.group(0))
        for call in re.finditer(r"\btorch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), (path, call.group(0))
        if path != REPO / "vsekit" / "legacy.py":
            assert not re.search(r"\b(pickle|cPickle|dill|joblib)\.(load|loads|Unpickler)\b", text), path
            assert not re.search(r"\bimport (cPickle|dill|joblib)\b", text), path


@pytest.mark.parametrize("change,needles", [
    (lambda d, e: d["data"].update(dir=str(e.root / "nowhere")), ["[data]", "nowhere", "no such folder"]),
    (lambda d, e: e.caps("dev").unlink(), ["[data]", "dev_caps.txt: no such file"]),
    (lambda d, e: d.update(output={"dir": str(e.caps("train"))}), ["[output] dir:", "not a folder"]),
    (lambda d, e: d["train"].update(device="cuda:99"), ["[train] device:", "cuda:99"]),
    (lambda d, e: d.update(loss={"type": "infonce", "temperature": 0.001, "max_scale": 100.0}),
     ["[loss] temperature:", "max_scale"]),
    (lambda d, e: d.update(loss={"type": "max_violation", "warmup_epochs": 3.0}),
     ["[loss] warmup_epochs:", "max_epochs"]),
    (lambda d, e: d["train"].update(lr_schedule="step", lr_step_epochs=5), ["[train] lr_step_epochs:", "never"]),
], ids=["data_folder", "data_file", "output_dir_is_a_file", "device", "temperature_vs_max_scale",
        "warmup_vs_max_epochs", "step_schedule_vs_max_epochs"])
def test_validate_checks_files_and_that_options_agree(env, change, needles):
    def edit(d):
        change(d, env)

    spec = env.write_spec(edit)
    before = snapshot(env.root)
    err = assert_refused(invoke(["validate", str(spec)], env.root), [f"{spec}: ", *needles])
    assert snapshot(env.root) == before, err


@case
def spec_nul_in_a_path_field(e):
    return e.run(change=lambda d: d["data"].update(dir="d\x00x")), [f"{e.spec}: [data] dir", "NUL character"]


@case
def bank_with_nan_embeddings(e):
    from safetensors.torch import load_file, save_file

    ckpt = e.ckpt()
    bank = e.root / "bank"
    made = invoke(["bank", str(ckpt), "--captions", str(e.caps("test")), "-o", str(bank)], e.root)
    assert made.exit_code == 0, made.output
    weights = e.root / "bank.safetensors"
    emb = load_file(weights)["embeddings"].clone()
    emb[3, 0] = float("nan")
    save_file({"embeddings": emb}, weights, metadata={"format": "vsekit-bank/1"})
    edit_json(e.root / "bank.json", lambda m: m.update(weights_sha256=sha256_file(weights)))  # deeper checks reached
    argv = ["retrieve", str(ckpt), "--features", str(e.npy("test")), "--bank", str(e.root / "bank.json")]
    return argv, ["bank.safetensors (bank embeddings)", "NaN or inf", "first row 3"]


@case
def retrieve_features_of_another_width(e):
    wrong = e.root / "wrong.npy"
    np.save(wrong, np.ones((3, 10), np.float32))
    return ["retrieve", str(e.ckpt()), "--features", str(wrong), "--row", "1"], [str(wrong), "(3, 10)"]


@case
def data_features_changed_after_extract_recorded_them(e):
    record = {"extractor": {"type": "precomputed"}, "features_sha256": sha256_file(e.npy("dev"))}
    (e.data / "test_extractor.json").write_text(json.dumps(record), encoding="utf-8")  # names dev's rows, not test's
    return e.run(), [str(e.npy("test")), "test_extractor.json", "sha256 differs"]


@case
def retrieve_features_with_a_huge_finite_value(e):
    huge = e.root / "huge.npy"
    rows = np.load(e.npy("test")).astype(np.float32)  # the slice is stored as float16, which cannot hold it
    rows[2, 5] = 3e38  # a valid float32, but the embedding's arithmetic overflows: it used to rank as nan
    np.save(huge, rows)
    return ["retrieve", str(e.ckpt()), "--features", str(huge), "--row", "2"], [str(huge), "too large", "first row 2"]


@case
def eval_data_with_a_huge_finite_value(e):
    rows = np.load(e.npy("test")).astype(np.float32)
    rows[4, 0] = -1e30
    np.save(e.npy("test"), rows)
    e.write_spec()
    return ["eval", str(e.ckpt()), "--data", str(e.spec)], [str(e.npy("test")), "too large", "first row 4"]


# ---- outputs never replace a user's file (issue 16 kind 1: every writer, not only run folders)


@case
def eval_output_over_a_users_file(e):
    mine = e.root / "mine.json"
    mine.write_text("USER\n", encoding="utf-8")
    return ["eval", str(e.ckpt()), "-q", "-o", str(mine)], [str(mine), "was not written by vsekit eval"]


@case
def eval_default_output_over_a_users_file_in_the_run(e):
    run = e.run_copy()
    (run / "eval_test.json").write_text('{"mine": 1}\n', encoding="utf-8")  # not in the manifest, not an eval's
    return ["eval", str(run), "-q"], [str(run / "eval_test.json"), "was not written by vsekit eval"]


@case
def encode_output_over_a_users_file(e):
    mine = e.root / "mine.npy"
    np.save(mine, np.arange(12, dtype=np.float32).reshape(3, 4))  # not unit rows: not an encoding
    return (["encode", str(e.ckpt()), "--captions", str(e.caps("test")), "-o", str(mine)],
            [str(mine), "was not written by vsekit encode"])


@case
def bank_output_over_a_users_files(e):
    (e.root / "mine.json").write_text('{"mine": 1}\n', encoding="utf-8")
    (e.root / "mine.safetensors").write_text("USER\n", encoding="utf-8")
    return (["bank", str(e.ckpt()), "--captions", str(e.caps("test")), "-o", str(e.root / "mine"), "-q"],
            [str(e.root / "mine.json"), "was not written by vsekit bank"])


@case
def report_output_over_a_users_files(e):
    folder = e.root / "urep"
    folder.mkdir()
    (folder / "gallery.html").write_text("<p>my page</p>\n", encoding="utf-8")
    return ["report", str(e.run_copy()), "-o", str(folder)], [str(folder / "gallery.html"), "vsekit report"]


@case
def image_bank_with_an_id_twice(e):
    ids = e.root / "ids.txt"
    n = len(np.load(e.npy("test")))
    ids.write_text("".join(f"im{i if i != 3 else 1}.jpg\n" for i in range(n)), encoding="utf-8")
    return (["bank", str(e.ckpt()), "--features", str(e.npy("test")), "--ids", str(ids), "-o", str(e.root / "b")],
            ["'im1.jpg' names more than one row"])
