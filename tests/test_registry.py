"""The registries and the plugin manager, with plugins built in the test (no packages involved)."""

from __future__ import annotations

import logging
import re
import types

import attrs
import pytest

import vsekit
from vsekit import hookimpl, plugins, registry, testing
from vsekit.errors import RegistryError
from vsekit.losses import InfoNCELoss
from vsekit.text.bow import BoWEncoder
from vsekit.text.gru import GRUEncoder


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Every test starts from the built-ins only and leaves the process-wide manager as it found it."""
    with testing.isolated_plugins() as mgr:
        yield mgr


def plugin(**hooks) -> types.SimpleNamespace:
    """A plugin object with the given hook functions (marked @hookimpl unless already a marked function)."""
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


class OtherBoW(BoWEncoder):
    pass


# --------------------------------------------------------------------------
# built-ins and lookups


def test_builtins_come_through_the_hooks():
    mgr = registry.manager()
    info = mgr.plugins["vsekit"]
    assert info.module == "vsekit.builtin" and info.version == vsekit.__version__
    assert "register_sentence_encoders" in info.hooks
    assert info.components["sentence_encoder"] == ["bow", "gru"]
    assert registry.get("sentence_encoder", "gru") is GRUEncoder
    assert registry.registry("loss").entry("infonce").plugin == "vsekit"


def test_unknown_name_lists_known_and_suggests():
    with pytest.raises(RegistryError) as err:
        registry.get("image_feature_extractor", "precomputd")
    msg = str(err.value)
    assert msg.startswith("unknown image feature extractor 'precomputd' — known: precomputed")
    assert "did you mean 'precomputed'?" in msg
    with pytest.raises(RegistryError, match="unknown loss 'zzz' — known: contrastive, infonce, max_violation"):
        registry.get("loss", "zzz")


def test_unknown_kind_suggests():
    with pytest.raises(RegistryError, match="did you mean 'sentence_encoder'"):
        registry.registry("sentence_encoders")


def test_module_colon_class():
    assert registry.get("sentence_encoder", "vsekit.text.bow:BoWEncoder") is BoWEncoder
    with pytest.raises(RegistryError, match="is not a sentence encoder"):
        registry.get("sentence_encoder", "vsekit.losses:InfoNCELoss")
    with pytest.raises(RegistryError, match=re.escape("cannot import module 'vsekit.nope'")):
        registry.get("sentence_encoder", "vsekit.nope:X")
    with pytest.raises(RegistryError, match="has no attribute 'BowEncoder', did you mean 'BoWEncoder'"):
        registry.get("sentence_encoder", "vsekit.text.bow:BowEncoder")


ENCODER_SRC = """
import vsekit
from vsekit.text.bow import BoWEncoder

class FileEncoder(BoWEncoder):
    pass
"""


def test_file_colon_class_resolves_against_base(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "my_enc.py").write_text(ENCODER_SRC, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    name = registry.canonical_name("my_enc.py:FileEncoder", tmp_path / "sub")
    assert name == f"{(tmp_path / 'sub' / 'my_enc.py').resolve()}:FileEncoder"
    cls = registry.get("sentence_encoder", "my_enc.py:FileEncoder", base=tmp_path / "sub")
    assert cls.__name__ == "FileEncoder" and issubclass(cls, BoWEncoder)
    assert registry.get("sentence_encoder", name) is cls  # the same file is imported once
    with pytest.raises(RegistryError, match="no such file"):
        registry.get("sentence_encoder", "my_enc.py:FileEncoder")  # relative to cwd: not there
    assert registry.canonical_name("gru", tmp_path) == "gru"
    assert registry.canonical_name("pkg.mod:Cls", tmp_path) == "pkg.mod:Cls"


def test_module_beside_the_spec_needs_no_pythonpath(tmp_path):
    (tmp_path / "beside_spec_mod.py").write_text(ENCODER_SRC, encoding="utf-8")
    cls = registry.get("sentence_encoder", "beside_spec_mod:FileEncoder", base=tmp_path)
    assert cls.__module__ == "beside_spec_mod"


def test_a_failing_user_file_is_one_message(tmp_path):
    (tmp_path / "bad_enc.py").write_text("raise ValueError('boom')\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"importing .* failed: ValueError: boom"):
        registry.get("sentence_encoder", "bad_enc.py:X", base=tmp_path)


# --------------------------------------------------------------------------
# registering from user code


def test_register_decorator_survives_reset_unless_forgotten():
    @vsekit.register("sentence_encoder", "user_bow")
    class UserBoW(BoWEncoder):
        pass

    assert registry.get("sentence_encoder", "user_bow") is UserBoW
    assert registry.registry("sentence_encoder").entry("user_bow").plugin == f"user:{__name__}"
    registry.reset()
    assert registry.get("sentence_encoder", "user_bow") is UserBoW  # the module is still imported
    assert registry.manager().plugins[f"user:{__name__}"].components == {"sentence_encoder": ["user_bow"]}
    registry.reset(forget_user=True)
    assert "user_bow" not in registry.registry("sentence_encoder")


def test_register_decorator_default_name_and_redefinition():
    @vsekit.register("sentence_encoder")
    class Redefined(BoWEncoder):
        pass

    first = Redefined

    @vsekit.register("sentence_encoder")
    class Redefined(BoWEncoder):  # re-running a cell or a file redefines the class
        pass

    assert registry.get("sentence_encoder", "redefined") is Redefined is not first


def test_register_refuses_builtin_names_and_bad_classes():
    with pytest.raises(RegistryError, match=r"sentence encoder 'gru' is registered twice: by plugin 'vsekit' "
                                            r"\(vsekit.text.gru.GRUEncoder\) and by plugin 'user:"):
        vsekit.register("sentence_encoder", "gru")(OtherBoW)
    with pytest.raises(RegistryError, match=re.escape("is not a subclass of vsekit.text.base.SentenceEncoder")):
        vsekit.register("sentence_encoder", "loss_here")(InfoNCELoss)
    with pytest.raises(RegistryError, match="without ':'"):
        vsekit.register("sentence_encoder", "a:b")(OtherBoW)


def test_registered_context_manager():
    with testing.registered("sentence_encoder", "temp_bow", OtherBoW) as cls:
        assert registry.get("sentence_encoder", "temp_bow") is cls
    assert "temp_bow" not in registry.registry("sentence_encoder")
    with (pytest.raises(vsekit.VsekitError, match="already exists"),
          testing.registered("sentence_encoder", "gru", OtherBoW)):
        pass


# --------------------------------------------------------------------------
# plugin hygiene


def test_a_plugin_adds_components_and_is_listed():
    mgr = registry.manager()
    info = mgr.add_plugin(plugin(register_sentence_encoders=lambda register: register("other_bow", OtherBoW)),
                          "mine", module="my_pkg")
    assert info.components == {"sentence_encoder": ["other_bow"]} and info.hooks == ["register_sentence_encoders"]
    assert registry.get("sentence_encoder", "other_bow") is OtherBoW
    listed = mgr.describe()["plugins"]
    assert [p["name"] for p in listed] == ["vsekit", "mine"]


def test_a_hook_may_take_no_arguments_but_not_other_ones():
    mgr = registry.manager()
    calls = []
    mgr.add_plugin(plugin(register_losses=lambda: calls.append(1)), "quiet")
    assert calls == [1]
    with pytest.raises(RegistryError, match=r"plugin 'wrongarg'.*'reg'"):
        mgr.add_plugin(plugin(register_losses=lambda reg: None), "wrongarg")
    assert "wrongarg" not in mgr.plugins


def test_misspelled_hook_is_an_error_naming_the_plugin():
    mgr = registry.manager()
    with pytest.raises(RegistryError) as err:
        mgr.add_plugin(plugin(register_sentence_encoder=lambda register: None), "typo", module="typo_pkg")
    msg = str(err.value)
    assert "plugin 'typo' (typo_pkg): unknown hook 'register_sentence_encoder'" in msg
    assert "did you mean 'register_sentence_encoders'?" in msg
    assert not mgr.pm.has_plugin("typo") and "typo" not in mgr.plugins
    mgr.pm.check_pending()  # nothing of it is left behind


def test_unmarked_hook_is_an_error():
    mgr = registry.manager()
    bare = types.SimpleNamespace(register_losses=lambda register: register("x", InfoNCELoss))
    with pytest.raises(RegistryError, match=r"plugin 'bare'.*register_losses is not marked @hookimpl"):
        mgr.add_plugin(bare, "bare")


def test_duplicate_names_across_plugins_name_both():
    mgr = registry.manager()
    mgr.add_plugin(plugin(register_sentence_encoders=lambda register: register("twin", OtherBoW)), "first")

    class Twin(BoWEncoder):
        pass

    with pytest.raises(RegistryError) as err:
        mgr.add_plugin(plugin(register_sentence_encoders=lambda register: register("twin", Twin)), "second")
    msg = str(err.value)
    assert "sentence encoder 'twin' is registered twice: by plugin 'first'" in msg
    assert "and by plugin 'second'" in msg and "VSEKIT_DISABLE_PLUGINS=first or second" in msg
    assert registry.get("sentence_encoder", "twin") is OtherBoW


def test_a_failing_hook_leaves_nothing_behind():
    def register_losses(register):
        register("half_done", InfoNCELoss)

    def register_sentence_encoders(register):
        raise RuntimeError("model files missing")

    mgr = registry.manager()
    with pytest.raises(plugins.HookFailed, match="register_sentence_encoders raised RuntimeError"):
        mgr.add_plugin(plugin(register_losses=register_losses, register_sentence_encoders=register_sentence_encoders),
                       "halfway")
    assert "half_done" not in registry.registry("loss")
    assert not mgr.pm.has_plugin("halfway")


def test_registering_one_name_twice_in_one_plugin():
    def register_sentence_encoders(register):
        register("dup", OtherBoW)
        register("dup", GRUEncoder)

    with pytest.raises(RegistryError, match=r"plugin 'selfdup'.*registers sentence encoder 'dup' twice"):
        registry.manager().add_plugin(plugin(register_sentence_encoders=register_sentence_encoders), "selfdup")


def test_a_failing_command_hook_is_skipped_with_a_warning(caplog):
    import click

    mgr = registry.manager()

    def register_commands(cli):
        raise ImportError("no click extras")

    mgr.add_plugin(plugin(register_commands=register_commands), "badcmds")
    group = click.Group()
    with caplog.at_level(logging.WARNING, logger="vsekit.plugins"):
        mgr.add_commands(group)
    lines = [r.getMessage() for r in caplog.records if "badcmds" in r.getMessage()]
    assert len(lines) == 1 and "register_commands raised ImportError: no click extras" in lines[0]
    assert mgr.skipped["badcmds"].startswith("register_commands raised")
    assert mgr.plugins["vsekit"].commands == sorted(group.commands)  # the built-ins' commands still came


def test_spec_component_config_is_structured_for_plugin_classes(tmp_path):
    @attrs.frozen
    class Cfg:
        width: int = 3

    class Configured(BoWEncoder):
        Config = Cfg

    from vsekit import spec as spec_mod

    with testing.registered("sentence_encoder", "configured", Configured):
        comp = spec_mod.build_component("sentence_encoder", {"type": "configured", "width": 5}, "model.x", tmp_path)
        assert comp.config == Cfg(width=5) and comp.cls is Configured
        with pytest.raises(spec_mod.SpecProblems) as err:
            spec_mod.build_component("sentence_encoder", {"type": "configured", "widht": 5}, "model.x", tmp_path)
        assert "did you mean 'width'" in str(err.value.problems)


def test_names_moved_to_plugins_still_work_with_a_warning():
    """``vsekit.registry.ENV_ONLY`` & co. moved to ``vsekit.plugins``; the old names warn for one release."""
    with pytest.warns(DeprecationWarning, match="use vsekit.plugins.ENV_ONLY"):
        assert registry.ENV_ONLY == plugins.ENV_ONLY == "VSEKIT_PLUGINS"
    with pytest.warns(DeprecationWarning, match="vsekit.plugins.PluginManager"):
        assert registry.PluginManager is plugins.PluginManager
    with pytest.raises(AttributeError):
        registry.no_such_name  # noqa: B018


def test_isolated_gives_a_fresh_manager_and_restores_the_old_one():
    before = registry.manager()
    with registry.isolated() as mgr:
        assert mgr is registry.manager() and mgr is not before
        assert set(mgr.plugins) <= {"vsekit"} | {n for n in mgr.plugins if not n.startswith("user:")}
    assert registry.manager() is before
