"""Bounded input (issue 16, kinds 3 and 5): resource limits checked before allocation (``vsekit.limits``), bad
``.npy`` headers, NaN/inf and beyond-float32 values, NaN weights, and the CLI's error funnel.

Every case runs the real CLI through ``tests/bad_input_harness.py``: exit 2, one ``error:`` line naming the file
and the field, row or tensor, no traceback, nothing written.
"""

from __future__ import annotations

import errno
import json
import pickle

import numpy as np
import pytest
import torch
from bad_input_harness import assert_refused, cases, check_case, fix_sha, invoke
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vsekit import limits
from vsekit.cli import EXIT_BUG

CASES, case = cases()


@pytest.mark.parametrize("make", CASES)
def test_bad_input_limits(make, env):
    check_case(make, env)


# --------------------------------------------------------------------------- spec values and sizes


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@case
def spec_nested_5000_deep_validate(e):  # past Python's recursion limit: the parser's RecursionError is caught
    e.spec.write_text(e.write_spec().read_text() + f"x = {_deep(5000)}\n")
    return ["validate", str(e.spec)], [e.spec, f"nested more than {limits.MAX_DEPTH} levels"]


@case
def spec_nested_150_deep_run(e):  # within Python's recursion limit: the depth check after parsing refuses it
    argv = e.run()
    e.spec.write_text(e.spec.read_text() + f"x = {_deep(150)}\n")
    return argv, [e.spec, "nested more than"]


@case
def set_override_nested_too_deep(e):
    return ["validate", str(e.write_spec()), "--set", f"train.x={_deep(500)}"], ["--set train.x", "nested more than"]


@case
def spec_larger_than_the_limit(e):
    e.write_spec()
    with e.spec.open("a") as fh:
        fh.write("#" + "x" * limits.MAX_FILE_BYTES + "\n")
    return ["validate", str(e.spec)], [e.spec, f"{limits.MAX_FILE_BYTES:,} bytes"]


def _spec_case(change, needles, command="validate"):
    def make(e):
        argv = e.run(change=change) if command == "run" else ["validate", str(e.write_spec(change))]
        return argv, [e.spec, *needles]

    return make


for _name, _change, _needles in [
    ("seed_negative", lambda d: d["train"].update(seed=-1), ["[train] seed", "got -1"]),
    ("seed_2_to_the_32", lambda d: d["train"].update(seed=2**32), ["[train] seed", f"got {2**32}"]),
    ("seed_2_to_the_64", lambda d: d["train"].update(seed=2**64), ["[train] seed", f"got {2**64}"]),
    ("model_dim_a_million", lambda d: d["model"].update(dim=10**6), ["[model] dim", "half of this machine"]),
    ("vocab_max_size_too_large", lambda d: d.update(vocab={"max_size": 10**9}), ["[vocab] max_size", "100,000,000"]),
    ("dim_word_past_int64", lambda d: d["model"]["sentence_encoder"].update(dim_word=2**70),
     ["[model] dim", "more parameters than torch can count"]),
    ("threads_a_million", lambda d: d["train"].update(threads=10**6), ["[train] threads", "[0, 256]"]),
]:
    for _command in ("validate", "run"):
        _make = _spec_case(_change, _needles, _command)
        _make.__name__ = f"spec_{_name}_{_command}"
        case(_make)


@case
def seeds_past_2_to_the_32(e):
    return e.run("--seeds", "3", change=lambda d: d["train"].update(seed=2**32 - 2)), \
        [e.spec, "[train] seed", "with 3 seeds the last is 4294967296"]


# --------------------------------------------------------------------------- .npy files


def _npz_as_npy(e):
    f = np.load(e.npy("train"))
    with e.npy("train").open("wb") as fh:
        np.savez(fh, features=f)
    return [e.npy("train"), ".npz archive"]


@case
def npz_archive_under_an_npy_name_run(e):
    return e.run(), _npz_as_npy(e)


@case
def npz_archive_under_an_npy_name_validate(e):
    return ["validate", str(e.write_spec())], _npz_as_npy(e)


@case
def npy_truncated(e):
    e.npy("dev").write_bytes(e.npy("dev").read_bytes()[:-4])
    return e.run(), [e.npy("dev"), "header declares shape (10, 1280)", "truncated or appended"]


@case
def npy_bytes_appended_validate(e):
    e.npy("test").write_bytes(e.npy("test").read_bytes() + b"\0" * 8)
    return ["validate", str(e.write_spec())], [e.npy("test"), "header declares shape (10, 1280)"]


@case
def npy_header_declares_a_huge_shape(e):  # refused from the header and file size: nothing allocated
    data = np.load(e.npy("train"))
    with e.npy("train").open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 1280)})
        fh.write(data.tobytes())
    return e.run(), [e.npy("train"), "header declares shape (1000000000000, 1280)"]


@case
def features_float64_beyond_float32(e):
    f = np.load(e.npy("dev")).astype(np.float64)
    f[7, 2] = 1e39
    np.save(e.npy("dev"), f)
    return e.run(), [e.npy("dev"), "values too large", "first row 7"]


def test_a_feature_file_larger_than_half_the_memory_is_refused_before_reading(env, tmp_path):
    """A sparse .npy file whose (consistent) header declares more float32 rows than half this machine's memory."""
    rows = int(limits.memory_bytes() * limits.MEMORY_SHARE // (4 * 1024)) + 1024
    path = tmp_path / "huge.npy"
    with path.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, 1024)})
        fh.truncate(fh.tell() + rows * 1024 * 4)  # sparse: no disk used, nothing to read
    result = invoke(["encode", str(env.ckpt()), "--features", str(path), "-o", str(tmp_path / "e.npy")], env.root)
    assert_refused(result, [path, f"shape ({rows}, 1024) of float32", "more than half of this machine's"])
    assert not (tmp_path / "e.npy").exists()


# --------------------------------------------------------------------------- queries and checkpoints


def _features_with(e, value, dtype=np.float32, row=2):
    f = np.load(e.npy("test")).astype(dtype)
    f[row, 3] = value
    path = e.root / "query.npy"
    np.save(path, f)
    return path


@case
def retrieve_nan_query_features(e):
    q = _features_with(e, np.nan)
    return ["retrieve", str(e.ckpt()), "--features", str(q), "--row", "2"], \
        [q, "NaN or inf", "first row 2"]


@case
def encode_nan_features(e):
    q = _features_with(e, np.nan, row=4)
    return ["encode", str(e.ckpt()), "--features", str(q), "-o", str(e.root / "emb.npy")], [q, "first row 4"]


@case
def encode_float64_beyond_float32(e):
    q = _features_with(e, 1e39, np.float64, row=1)
    return ["encode", str(e.ckpt()), "--features", str(q), "-o", str(e.root / "emb.npy")], \
        [q, "values too large", "first row 1"]


def _nan_weight(e):
    meta = e.ckpt()
    w = meta.with_suffix(".safetensors")
    with safe_open(str(w), framework="pt") as fh:
        header = fh.metadata()
    tensors = load_file(w)
    tensors["sentence_encoder.embed.weight"][5, 1] = float("nan")
    save_file(tensors, w, metadata=header)
    fix_sha(meta)
    return meta, [w, "tensor 'sentence_encoder.embed.weight'", "NaN or inf"]


@case
def ckpt_nan_weight_eval(e):
    meta, needles = _nan_weight(e)
    return ["eval", str(meta), "-q"], needles


@case
def ckpt_nan_weight_retrieve(e):
    meta, needles = _nan_weight(e)
    return ["retrieve", str(meta), "--text", "a dog"], needles


@case
def ckpt_nan_weight_bank(e):
    meta, needles = _nan_weight(e)
    return ["bank", str(meta), "--captions", str(e.caps("test")), "-o", str(e.root / "bank")], needles


@case
def ckpt_json_nested_too_deep(e):
    meta = e.ckpt()
    meta.write_text(meta.read_text().rstrip().removesuffix("}") + f', "extra": {_deep(3000)}}}')
    return ["eval", str(meta), "-q"], [meta, "nested more than"]


@case
def legacy_options_n_words_1e12(e):
    from test_legacy import make_reference

    npz, _, _, options = make_reference(e.root)
    npz.with_name(npz.name + ".pkl").write_bytes(pickle.dumps({**options, "n_words": 10**12}, protocol=2))
    return ["import-legacy", str(npz), "-o", str(e.root / "imported")], \
        [npz.with_name(npz.name + ".pkl"), "n_words", "1000000000000"]


@case
def legacy_options_too_many_parameters(e):
    from test_legacy import make_reference

    npz, _, _, options = make_reference(e.root)
    big = {**options, "dim": 10**6}  # a GRU of 3 x 10**12 weights
    npz.with_name(npz.name + ".pkl").write_bytes(pickle.dumps(big, protocol=2))
    return ["import-legacy", str(npz), "-o", str(e.root / "imported")], \
        [npz.with_name(npz.name + ".pkl"), "parameters", "half of this machine"]


# --------------------------------------------------------------------------- the error funnel


def _raise_from_validate(monkeypatch, exc):
    import vsekit.api

    def boom(*_a, **_k):
        raise exc

    monkeypatch.setattr(vsekit.api, "check_spec", boom)


@pytest.mark.parametrize("exc,needles", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/out/best.json"), ["/x/out/best.json", "No space left"]),
    (PermissionError(errno.EACCES, "Permission denied", "/x/spec.toml"), ["/x/spec.toml", "Permission denied"]),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/f/run"), ["/x/f/run", "Not a directory"]),
    (MemoryError(), ["out of memory"]),
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 12 bytes"), ["out of memory"]),
    (RecursionError("maximum recursion depth exceeded"), ["nested too deeply"]),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ["not valid UTF-8"]),
], ids=["ENOSPC", "EACCES", "ENOTDIR", "MemoryError", "torch-allocator", "RecursionError", "UnicodeError"])
def test_expected_failures_are_one_error_line(exc, needles, env, monkeypatch):
    _raise_from_validate(monkeypatch, exc)
    result = invoke(["validate", str(env.write_spec())], env.root)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_a_bug_is_one_internal_error_line_with_exit_70(env, monkeypatch):
    _raise_from_validate(monkeypatch, TypeError("unsupported operand type(s) for +: 'int' and 'str'"))
    result = invoke(["validate", str(env.write_spec())], env.root)
    assert result.exit_code == EXIT_BUG == 70, (result.exit_code, result.output)
    assert result.stderr.splitlines() == [
        "error: internal error (a bug in vsekit): TypeError: unsupported operand type(s) for +: 'int' and 'str'; "
        "run again with --debug for the traceback and please report it"]


def test_debug_shows_the_traceback_of_a_bug_and_of_an_os_error(env, monkeypatch):
    for exc in (TypeError("bug"), OSError(errno.ENOSPC, "No space left on device", "/x")):
        _raise_from_validate(monkeypatch, exc)
        with pytest.raises(type(exc)):
            invoke(["--debug", "validate", str(env.write_spec())], env.root)


# --------------------------------------------------------------------------- the limits themselves


def test_seed_range_is_what_every_generator_takes():
    import random

    lo, hi = limits.SEED_RANGE
    for seed in (lo, hi - 1):
        assert limits.seed_problem(seed) is None
        random.seed(seed)
        np.random.seed(seed)
        np.random.default_rng(seed)
        torch.manual_seed(seed)
    for bad in (lo - 1, hi, 2**64, True, 1.0):
        assert limits.seed_problem(bad) is not None
    with pytest.raises(ValueError):  # what the limit protects against: numpy's legacy seeding refuses 2**32
        np.random.seed(hi)


def test_nesting_depth_counts_lists_and_tables():
    assert limits.nesting_depth(3) == 0
    assert limits.nesting_depth([]) == 1
    assert limits.nesting_depth({"a": [1, {"b": []}]}) == 4
    deep: list = []
    for _ in range(4999):
        deep = [deep]
    assert limits.nesting_depth(deep) == 5000  # no recursion


def test_parameter_count_is_exact_and_allocates_nothing(trained_run):
    from vsekit.checkpoint import load
    from vsekit.model import parameter_count
    from vsekit.spec import from_dict

    model, meta, _ = load(trained_run / "best.json")
    s = from_dict(meta["spec"])
    assert parameter_count(s.model.sentence_encoder, s.model.image_encoder, len(meta["vocab"]), meta["dim"],
                           meta["dim_image"]) == sum(p.numel() for p in model.parameters())
    n = parameter_count(s.model.sentence_encoder, s.model.image_encoder, 10**6, 10**5, 10**5)  # ~4e10 floats
    assert n > 0.5 * limits.memory_bytes() / 4  # counted without allocating 160 GB


def test_read_json_refuses_a_file_over_its_limit(tmp_path):
    from vsekit.errors import DataError

    p = tmp_path / "big.json"
    p.write_text(json.dumps(["x" * 100]))
    assert limits.read_json(p, max_bytes=200) == ["x" * 100]
    with pytest.raises(DataError, match=f"{p}: {p.stat().st_size} bytes; .* at most 50 bytes"):
        limits.read_json(p, max_bytes=50)
