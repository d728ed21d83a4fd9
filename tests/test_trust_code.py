"""Loading a model never runs code its files name unless the caller opts in (issue 16, kind 2).

A planted module writes a marker file when it is imported: after a refused load the marker must not exist
(CLI: one ``error:`` line, exit 2, nothing changed on disk), after ``--trust-code`` / ``trust_code=True`` it must.
"""

from __future__ import annotations

import json
import sys
import uuid

import pytest
from bad_input_harness import assert_refused, edit_json, invoke, snapshot

import vsekit
from vsekit import registry
from vsekit.errors import UntrustedCodeError
from vsekit.training.state import _with_defaults

PLANT = 'from pathlib import Path\nPath(__file__).with_name("MARKER").write_text("imported")\n'
ENCODER = PLANT + "from vsekit.text.gru import GRUEncoder\n\n\nclass Enc(GRUEncoder):\n    pass\n"


@pytest.fixture(autouse=True)
def _clean_imports(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # a module name's folder goes on sys.path when trusted
    yield
    registry.reset(forget_user=True)


def plant(env, how: str):
    """A copy of the trained checkpoint whose spec names planted code ``how``; returns (checkpoint JSON, marker,
    the name the message must quote)."""
    ckpt = env.ckpt()
    folder = ckpt.parent
    if how == "imports_file":
        (folder / "helpers.py").write_text(PLANT, encoding="utf-8")
        name = "helpers.py"
        edit_json(ckpt, lambda m: m["spec"].update(imports=[name]))
    elif how == "imports_module":
        name = f"helpers_{uuid.uuid4().hex[:8]}"  # a fresh module per test: sys.modules would hide a second import
        (folder / f"{name}.py").write_text(PLANT, encoding="utf-8")
        edit_json(ckpt, lambda m: m["spec"].update(imports=[name]))
    else:  # a file.py:Class component name
        (folder / "enc.py").write_text(ENCODER, encoding="utf-8")
        name = f"{folder / 'enc.py'}:Enc"
        edit_json(ckpt, lambda m: m["spec"]["model"]["sentence_encoder"].update(type=name))
    return ckpt, folder / "MARKER", name


HOWS = ["imports_file", "imports_module", "file_class"]


@pytest.mark.parametrize("how", HOWS)
def test_load_model_refuses_named_code_unless_trusted(env, how):
    ckpt, marker, name = plant(env, how)
    with pytest.raises(UntrustedCodeError) as exc:
        vsekit.load_model(ckpt)
    msg = str(exc.value)
    assert name in msg and "trust_code=True" in msg and str(ckpt) in msg and "\n" not in msg
    assert not marker.exists()
    model = vsekit.load_model(ckpt.parent, trust_code=True)
    assert marker.read_text() == "imported"
    assert (type(model.sentence_encoder).__name__ == "Enc") == (how == "file_class")


@pytest.mark.parametrize("how", HOWS)
def test_cli_refuses_named_code_and_runs_it_with_trust_code(env, how):
    ckpt, marker, name = plant(env, how)
    caps = env.caps("test")
    out = env.root / "emb.npy"
    before = snapshot(env.root)
    err = assert_refused(invoke(["encode", str(ckpt), "--captions", str(caps), "-o", str(out)], env.root),
                         [name, "--trust-code"])
    assert str(ckpt) in err
    assert not marker.exists() and snapshot(env.root) == before
    result = invoke(["encode", str(ckpt), "--captions", str(caps), "-o", str(out), "--trust-code"], env.root)
    assert result.exit_code == 0, result.output
    assert marker.exists() and out.is_file()


@pytest.mark.parametrize("argv", [
    ["eval", "{ckpt}"],
    ["eval", "{ckpt}", "--data", "{spec}"],
    ["retrieve", "{ckpt}", "--text", "a dog"],
    ["bank", "{ckpt}", "--captions", "{caps}", "-o", "{root}/bank"],
    ["report", "{run}"],
    ["export-legacy", "{ckpt}", "-o", "{root}/ref.npz"],
    ["serve", "{ckpt}", "--port", "0"],
], ids=["eval", "eval-data", "retrieve", "bank", "report", "export-legacy", "serve"])
def test_every_model_loading_command_refuses(env, argv):
    ckpt, marker, name = plant(env, "imports_file")
    run = env.run_copy()  # report reads a run folder: plant the same file there
    (run / "helpers.py").write_text(PLANT, encoding="utf-8")
    edit_json(run / "best.json", lambda m: m["spec"].update(imports=["helpers.py"]))
    spec = env.write_spec()
    before = snapshot(env.root)
    argv = [a.format(ckpt=ckpt, spec=spec, caps=env.caps("test"), root=env.root, run=run) for a in argv]
    assert_refused(invoke(argv, env.root), [name, "--trust-code"])
    assert snapshot(env.root) == before and not marker.exists()  # no marker, no output


def test_eval_refuses_code_named_by_the_models_data_only(env):
    """The model itself loads (its encoders are built-ins), but reading its own data would import a file."""
    ckpt = env.ckpt()
    (ckpt.parent / "reader.py").write_text(PLANT, encoding="utf-8")
    edit_json(ckpt, lambda m: m["spec"]["data"].update(type=f"{ckpt.parent / 'reader.py'}:Reader"))
    vsekit.load_model(ckpt)  # nothing of the model is user code
    assert_refused(invoke(["eval", str(ckpt)], env.root), ["reader.py:Reader", "data.type"])
    assert not (ckpt.parent / "MARKER").exists()


def test_a_registered_module_class_name_needs_no_trust(env):
    """``module:Class`` of a class an installed plugin (here: the built-ins) registered imports nothing new."""
    ckpt = env.ckpt()
    edit_json(ckpt, lambda m: m["spec"]["model"]["sentence_encoder"].update(type="vsekit.text.gru:GRUEncoder"))
    model = vsekit.load_model(ckpt)
    assert type(model.sentence_encoder).__name__ == "GRUEncoder"


def test_resume_never_imports_code_only_the_run_folder_names(env):
    """``--resume`` reads the run's saved spec; code the user's own spec does not name stays unimported."""
    run = env.run_copy()
    (run / "helpers.py").write_text(PLANT, encoding="utf-8")
    saved = json.loads((run / "best.json").read_text())["spec"]
    saved["imports"] = [str(run / "helpers.py")]
    assert _with_defaults(saved, run / "spec.toml", own={**saved, "imports": []}) == saved  # compared as written
    assert not (run / "MARKER").exists()
    _with_defaults(saved, run / "spec.toml", own=saved)  # the user's spec names it: it ran already, may run
    assert (run / "MARKER").exists()


def test_a_saved_spec_is_refused_before_the_reference_options_resolve_names(tmp_path):
    """``from_dict`` decides before ``[reference]`` translation, which looks component classes up."""
    from vsekit import spec as spec_mod

    (tmp_path / "evil.py").write_text(ENCODER, encoding="utf-8")
    raw = {"reference": {"dim": 8}, "data": {"type": "precomp", "dir": "vsekit:f8k_mini"},
           "model": {"sentence_encoder": {"type": f"{tmp_path / 'evil.py'}:Enc"}}, "loss": {"type": "contrastive"}}
    with pytest.raises(UntrustedCodeError, match=r"model\.sentence_encoder\.type"):
        spec_mod.from_dict(raw, source="best.json", base=tmp_path)
    assert not (tmp_path / "MARKER").exists()


def test_a_feature_files_record_never_imports_the_extractor_it_names(tmp_path):
    """A feature file's ``_extractor.json`` is data: comparing its extractor with another resolves names without
    importing (a ``file.py:Class`` or an unimported ``module:Class`` compares by name), so the records differ."""
    from vsekit.errors import DataError
    from vsekit.extract import recorded_extractor, resolve_type

    (tmp_path / "evil.py").write_text(PLANT + "class Evil:\n    pass\n", encoding="utf-8")
    module = f"evil_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(PLANT, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    for i, name in enumerate([f"{tmp_path / 'evil.py'}:Evil", f"{module}:Evil"]):
        with pytest.raises(vsekit.VsekitError, match="not a registered or already imported"):
            resolve_type(name)
        for split, table in (("a", {"type": name}), ("b", {"type": "precomputed"})):
            (tmp_path / f"{split}{i}_ims.npy").write_bytes(b"")
            (tmp_path / f"{split}{i}_extractor.json").write_text(json.dumps({"extractor": table}), encoding="utf-8")
        with pytest.raises(DataError, match="do not mix"):
            recorded_extractor([tmp_path / f"a{i}_ims.npy", tmp_path / f"b{i}_ims.npy"])
    assert not (tmp_path / "MARKER").exists()
    assert resolve_type("precomputed").__name__  # a registered name still resolves


def test_serve_with_trust_code_loads_the_models_code(env):
    from vsekit.serve.server import ServeRequest, build_app

    ckpt, marker, _ = plant(env, "imports_file")
    assert "--trust-code" in invoke(["serve", "--help"], env.root).output
    build_app(ServeRequest(model=ckpt, port=0, trust_code=True))  # what `vsekit serve --trust-code` serves
    assert marker.exists()
