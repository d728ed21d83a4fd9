"""Plugins for real: installed packages found through entry points, the CLI, specs naming user classes.

The packages under ``tests/plugin_pkgs/`` are made discoverable with
``vsekit.testing.installed_plugin`` (a ``.dist-info`` in a temporary folder on
``sys.path``), which ``importlib.metadata`` treats exactly like a pip install.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import threshold

import vsekit
from vsekit import plugins, registry, testing
from vsekit.cli import cli
from vsekit.errors import RegistryError
from vsekit.testing import vsekit_registry, vsekit_tiny_spec, vsekit_tiny_split  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
PKGS = Path(__file__).resolve().parent / "plugin_pkgs"
TESTPLUGIN = PKGS / "vsekit-testplugin"
BROKEN = PKGS / "vsekit-brokenplugin"
DUP = PKGS / "vsekit-dupplugin"
TYPO = PKGS / "vsekit-typoplugin"
EXAMPLES = REPO / "examples"


@pytest.fixture(autouse=True)
def _clean_env():
    """No switch from the caller's environment, and a fresh manager before and after each test.

    The switches are saved and restored by hand (not with monkeypatch): tests
    change them inside ``installed_plugin`` blocks, which restore them too.
    """
    saved = {k: os.environ.pop(k, None) for k in (plugins.ENV_ONLY, plugins.ENV_DISABLE)}
    registry.reset()
    yield
    for k, v in saved.items():
        os.environ.pop(k, None)
        if v is not None:
            os.environ[k] = v
    registry.reset()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real ``vsekit`` entry point in a fresh interpreter (what a user types)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", "from vsekit.cli import main; main()", *args], env=full_env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


# --------------------------------------------------------------------------
# discovery


def test_an_installed_package_is_discovered_through_its_entry_point():
    with testing.installed_plugin(TESTPLUGIN):
        mgr = registry.manager()
        info = mgr.plugins["testplugin"]
        assert info.dist == "vsekit-testplugin" and info.version == "0.3.1" and info.module == "vsekit_testplugin"
        assert info.components == {"sentence_encoder": ["meanpool"], "loss": ["cosine_hinge"]}
        assert info.hooks == ["register_commands", "register_losses", "register_sentence_encoders"]
        cls = registry.get("sentence_encoder", "meanpool")
        assert cls.__module__ == "vsekit_testplugin"
        testing.check_sentence_encoder("meanpool", {"dim_word": 8})
    assert "meanpool" not in registry.registry("sentence_encoder")  # gone with the package


def test_a_plugin_component_trains_from_a_spec(tmp_path):
    with testing.installed_plugin(TESTPLUGIN):
        spec = testing.tiny_spec(sentence_encoder={"type": "meanpool", "dim_word": 16}, loss={"type": "cosine_hinge"},
                                 train={"lr": 0.005})
        results = testing.run_quick(spec, tmp_path / "run")
        assert results["test"]["rsum"] >= threshold("testplugin_meanpool_1ep")  # benchmarks/thresholds.py
        model = vsekit.load_model(tmp_path / "run")  # the checkpoint names the plugin's class by name
        assert type(model.sentence_encoder).__name__ == "MeanPoolEncoder"


def test_a_broken_plugin_is_skipped_with_one_warning(caplog):
    with testing.installed_plugin(TESTPLUGIN, BROKEN):
        with caplog.at_level(logging.WARNING):
            mgr = registry.manager()
        lines = [r.getMessage() for r in caplog.records if "brokenplugin" in r.getMessage()]
        assert lines == ["vsekit: skipped plugin 'brokenplugin' (vsekit_brokenplugin): "
                         "ModuleNotFoundError: No module named 'vsekit_no_such_dependency'"]
        assert "\n" not in lines[0]
        assert mgr.skipped == {"brokenplugin": "ModuleNotFoundError: No module named 'vsekit_no_such_dependency'"}
        assert "testplugin" in mgr.plugins  # the others still load
        out = CliRunner().invoke(cli, ["plugins"]).output
        assert "brokenplugin: skipped (ModuleNotFoundError: No module named 'vsekit_no_such_dependency')" in out


def test_duplicate_names_across_packages_are_an_error_naming_both():
    with testing.installed_plugin(TESTPLUGIN, DUP):
        with pytest.raises(RegistryError) as err:
            registry.manager()
        msg = str(err.value)
        assert "sentence encoder 'meanpool' is registered twice" in msg
        assert "'dupplugin' (vsekit_dupplugin.OtherMeanPool)" in msg
        assert "'testplugin' (vsekit_testplugin.MeanPoolEncoder)" in msg
        assert "VSEKIT_DISABLE_PLUGINS=dupplugin or testplugin" in msg


def test_misspelled_hook_in_a_package_is_an_error_naming_it():
    with testing.installed_plugin(TYPO), pytest.raises(RegistryError) as err:
        registry.manager()
    assert "plugin 'typoplugin' (vsekit_typoplugin): unknown hook 'register_sentence_encoder'" in str(err.value)
    assert "did you mean 'register_sentence_encoders'?" in str(err.value)


def packages(mgr) -> set[str]:
    """The plugins loaded from packages: classes that user code registered (``user:MODULE``, kept across
    ``registry.reset()`` because their modules stay imported) are not switched by the environment."""
    return {name for name in mgr.plugins if not name.startswith("user:")}


def test_off_switches(caplog):
    env = os.environ
    with testing.installed_plugin(TESTPLUGIN, BROKEN):
        env[plugins.ENV_DISABLE] = "testplugin, brokenplugin"
        registry.reset()
        mgr = registry.manager()
        assert packages(mgr) == {"vsekit"} and not mgr.skipped
        assert mgr.disabled["testplugin"] == mgr.disabled["brokenplugin"] == "VSEKIT_DISABLE_PLUGINS"
        with pytest.raises(RegistryError, match="unknown sentence encoder 'meanpool'"):
            registry.get("sentence_encoder", "meanpool")

        del env[plugins.ENV_DISABLE]
        del env[plugins.ENV_ONLY]  # unset: every installed plugin
        registry.reset()
        assert {"testplugin", "brokenplugin"} <= set(registry.manager().plugins) | set(registry.manager().skipped)

        env[plugins.ENV_ONLY] = ""  # set but empty: no plugin at all
        registry.reset()
        assert packages(registry.manager()) == {"vsekit"}

        env[plugins.ENV_ONLY] = "testplugin,nosuchplugin"  # the broken one is never imported
        registry.reset()
        with caplog.at_level(logging.WARNING):
            mgr = registry.manager()
        assert packages(mgr) == {"vsekit", "testplugin"} and not mgr.skipped
        assert mgr.disabled["brokenplugin"] == "not in VSEKIT_PLUGINS"
        assert any("names plugin 'nosuchplugin'" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------
# the CLI


def test_plugins_json_lists_versions_components_and_skips():
    with testing.installed_plugin(TESTPLUGIN, BROKEN):
        result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["vsekit"]["version"] == vsekit.__version__
    assert by_name["testplugin"] == {
        "name": "testplugin", "module": "vsekit_testplugin", "distribution": "vsekit-testplugin", "version": "0.3.1",
        "hooks": ["register_commands", "register_losses", "register_sentence_encoders"],
        "components": {"sentence_encoder": ["meanpool"], "loss": ["cosine_hinge"]}, "commands": [],
    }
    assert list(data["skipped"]) == ["brokenplugin"]


def test_the_installed_cli_sees_plugins_and_their_commands():
    """One real process: entry points, plugin commands and the skip warning as a user sees them."""
    with testing.installed_plugin(TESTPLUGIN, BROKEN) as inst:
        env = inst.env
        listing = run_cli("plugins", "--json", env=env)
        hello = run_cli("testplugin-hello", env={**env, plugins.ENV_DISABLE: "brokenplugin"})
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    tp = next(p for p in data["plugins"] if p["name"] == "testplugin")
    assert tp["commands"] == ["testplugin-hello"] and tp["version"] == "0.3.1"
    assert listing.stderr.strip().splitlines() == [
        "vsekit: skipped plugin 'brokenplugin' (vsekit_brokenplugin): "
        "ModuleNotFoundError: No module named 'vsekit_no_such_dependency'"]
    assert hello.returncode == 0 and hello.stdout == "hello from vsekit-testplugin\n" and hello.stderr == ""


def test_a_duplicate_at_startup_is_one_error_line_and_exit_2():
    with testing.installed_plugin(TESTPLUGIN, DUP) as inst:
        result = run_cli("plugins", env=inst.env)
    assert result.returncode == 2
    assert result.stderr.startswith("error: sentence encoder 'meanpool' is registered twice")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


FLICKR_SPEC = """
[data]
type = "flickr8k"
root = "{root}"
features = {{type = "precomputd", dir = "{root}"}}

[model]
dim = 32

[loss]
type = "infonce"
"""


def test_unknown_component_via_cli_suggests_and_exits_2(tmp_path):
    os.environ[plugins.ENV_ONLY] = ""  # the built-ins only, whatever else is installed here (undone by _clean_env)
    spec = tmp_path / "spec.toml"
    spec.write_text(FLICKR_SPEC.format(root=tmp_path.as_posix()), encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("error: ") and result.stdout == "", result.output
    assert ("[data.features] type: unknown image feature extractor 'precomputd' — known: precomputed, "
            "did you mean 'precomputed'?") in result.output
    assert "Traceback" not in result.output
    real = run_cli("validate", str(spec))
    assert real.returncode == 2 and "did you mean 'precomputed'?" in real.stderr and "Traceback" not in real.stderr


# --------------------------------------------------------------------------
# specs naming user classes


USER_ENCODER = '''
import attrs
import vsekit
from vsekit.text.bow import BoWEncoder


@vsekit.register("sentence_encoder", "wide_bow")
class WideBoW(BoWEncoder):
    """A bag of words; registered by name when the spec imports this file."""
'''


def _spec(tmp_path: Path, sentence_encoder: str, imports: str = "") -> Path:
    text = f"""{imports}
name = "user_class"

[data]
type = "precomp"
dir = "vsekit:f8k_mini"

[model]
dim = 16

[model.sentence_encoder]
type = "{sentence_encoder}"

[loss]
type = "infonce"
"""
    path = tmp_path / "specs" / "spec.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("how", ["file", "module", "imports_file", "imports_module"])
def test_a_spec_names_a_user_class_without_packaging(tmp_path, monkeypatch, how):
    code_dir = tmp_path / "specs"
    code_dir.mkdir()
    module = f"user_enc_{how}"  # a fresh module name per case
    (code_dir / f"{module}.py").write_text(USER_ENCODER.replace("wide_bow", f"wide_bow_{how}"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # relative names resolve against the spec's folder, not here
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec_path = {
        "file": lambda: _spec(tmp_path, f"{module}.py:WideBoW"),
        "module": lambda: _spec(tmp_path, f"{module}:WideBoW"),
        "imports_file": lambda: _spec(tmp_path, f"wide_bow_{how}", f'imports = ["{module}.py"]'),
        "imports_module": lambda: _spec(tmp_path, f"wide_bow_{how}", f'imports = ["{module}"]'),
    }[how]()
    spec = vsekit.load_spec(spec_path)
    cls = spec.model.sentence_encoder.cls
    assert cls.__name__ == "WideBoW" and cls.__doc__.startswith("A bag of words")
    if how == "file":  # saved with the run as an absolute path, so the checkpoint resolves it from anywhere
        assert spec.model.sentence_encoder.type == f"{(code_dir / module).resolve()}.py:WideBoW"
    result = CliRunner().invoke(cli, ["validate", str(spec_path)])
    assert result.exit_code == 0 and "ok" in result.output, result.output


def test_a_bad_user_class_name_in_a_spec_is_one_readable_error(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "enc.py").write_text(USER_ENCODER, encoding="utf-8")
    spec_path = _spec(tmp_path, "enc.py:WideBow")
    result = CliRunner().invoke(cli, ["validate", str(spec_path)])
    assert result.exit_code == 2
    assert "[model.sentence_encoder] type: sentence encoder" in result.output
    assert "has no attribute 'WideBow', did you mean 'WideBoW'?" in result.output


# --------------------------------------------------------------------------
# examples/custom_encoder.py + .toml


def test_custom_encoder_example_trains_and_reloads(tmp_path):
    results = testing.run_quick(EXAMPLES / "custom_encoder.toml", tmp_path / "run")  # one epoch, about 4 s
    assert results["test"]["rsum"] >= threshold("custom_encoder_example_1ep")  # benchmarks/thresholds.py
    saved = (tmp_path / "run" / "spec.toml").read_text(encoding="utf-8")
    file = Path(os.path.relpath((EXAMPLES / "custom_encoder.py").resolve(), (tmp_path / "run").resolve())).as_posix()
    assert f'type = "{file}:CNNEncoder"' in saved  # relative to the run folder: no path of this machine
    registry.reset(forget_user=True)  # as in a new process: nothing registered by the example
    model = vsekit.load_model(tmp_path / "run", trust_code=True)  # the run names the example's file
    assert type(model.sentence_encoder).__name__ == "CNNEncoder"
    testing.check_sentence_encoder(type(model.sentence_encoder), {"dim_word": 8, "channels": 4, "widths": [1, 4]})


def test_custom_encoder_via_imports_and_short_name(tmp_path):
    spec = testing.tiny_spec(imports=[str(EXAMPLES / "custom_encoder.py")],
                             sentence_encoder={"type": "cnn", "dim_word": 16, "channels": 16, "widths": [3]},
                             train={"lr": 0.005})
    results = testing.run_quick(spec, tmp_path / "run")
    assert results["test"]["rsum"] >= threshold("custom_cnn_tiny_1ep")  # benchmarks/thresholds.py
    registry.reset(forget_user=True)
    model = vsekit.load_model(tmp_path / "run", trust_code=True)  # the checkpoint replays the spec's imports
    assert type(model.sentence_encoder).__name__ == "CNNEncoder"


@pytest.mark.slow
def test_custom_encoder_example_as_written(tmp_path):
    results = vsekit.train(EXAMPLES / "custom_encoder.toml", tmp_path / "run", quiet=True)
    assert results["test"]["rsum"] >= threshold("custom_encoder_example_6ep")  # benchmarks/thresholds.py


# --------------------------------------------------------------------------
# vsekit.testing's fixtures, as a plugin author uses them


def test_testing_fixtures(vsekit_registry, vsekit_tiny_split, vsekit_tiny_spec, tmp_path):  # noqa: F811
    assert set(vsekit_registry.plugins) == {"vsekit"}  # the built-ins only, whatever is installed
    assert vsekit_tiny_split.n_images == 20 and len(vsekit_tiny_split.captions) == 100
    assert vsekit_tiny_split.dim_image == 1280
    data = testing.tiny_dataset(tmp_path / "data", train=20, dev=10, test=10)
    vsekit_tiny_spec["data"]["dir"] = str(data)
    results = testing.run_quick(vsekit_tiny_spec, tmp_path / "run")
    assert results["train_captions"] == 100 and results["test"]["split"] == "test"
