"""The package root: every public name resolves lazily, leaves and the CLI import without torch, old CLI
module paths still work with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import vsekit


def fresh(code: str) -> str:
    """``code``'s stdout in a fresh interpreter."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_every_public_name_resolves_and_is_listed():
    for name in vsekit.__all__:
        assert getattr(vsekit, name) is not None, name
    assert set(vsekit.__all__) <= set(dir(vsekit))
    from vsekit import config
    from vsekit.image.base import Extracted

    assert vsekit.positive is config.positive and vsekit.FieldError is config.FieldError
    assert vsekit.Extracted is Extracted


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        vsekit.no_such_name  # noqa: B018


@pytest.mark.parametrize("code", ["import vsekit", "import vsekit.cli", "from vsekit import hookimpl, positive"])
def test_the_root_and_the_cli_do_not_import_torch(code):
    assert fresh(f"{code}; import sys; print('torch' in sys.modules)") == "False"


def test_a_submodule_is_reached_from_the_root_as_before():
    assert fresh("import vsekit; print(vsekit.retrieval.load_bank.__module__, vsekit.train.__module__)") == \
        "vsekit.retrieval.banks vsekit.api"


@pytest.mark.parametrize("old, new", [("vsekit.extract_cli", "vsekit.cli.extract"),
                                      ("vsekit.legacy_cli", "vsekit.cli.legacy")])
def test_the_old_cli_modules_warn_and_reexport(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use {new}"):
        shim = importlib.import_module(old)
    assert shim.add_commands is importlib.import_module(new).add_commands
