"""Old import paths of the rank maths, presets and encoders keep working for one release, with a DeprecationWarning."""

import importlib
import sys

import pytest


@pytest.mark.parametrize("old, new, names", [
    ("vsekit.metrics_core", "vsekit.metrics", ["recall", "ranks_both", "chance_rsum", "check_folds", "input_warnings"]),
    ("vsekit.presets", "vsekit.data.presets", ["resolve_preset", "PRESETS", "ENV_ROOT"]),
])
def test_an_old_module_warns_and_gives_the_same_objects(old, new, names):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; use {new}"):
        mod = importlib.import_module(old)
    target = importlib.import_module(new)
    for name in names:
        assert getattr(mod, name) is getattr(target, name)


@pytest.mark.parametrize("name", ["encode_sentences", "encode_images"])
def test_evaluate_encoders_warn_and_are_the_model_ones(name):
    from vsekit import evaluate, model

    with pytest.warns(DeprecationWarning, match=f"vsekit.evaluate.{name} is deprecated; use vsekit.model.{name}"):
        got = getattr(evaluate, name)
    assert got is getattr(model, name)
    with pytest.raises(AttributeError):
        evaluate.no_such_name  # noqa: B018


def test_the_feature_cache_lives_below_the_readers():
    from vsekit import extract
    from vsekit.image import cache

    assert extract.FeatureFile is cache.FeatureFile and extract.ids_path is cache.ids_path
