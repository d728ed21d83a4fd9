"""The quality pass marks of the suite (``benchmarks/results/thresholds.json``) separate working from broken models.

``benchmarks/thresholds.py`` measures, for every configuration a quality test
trains, the working model and two broken variants (untrained weights;
shuffled caption-image pairs). Here: the recorded pass marks lie between the
two groups, were measured on the specs the configurations build today, and a
broken variant trained again (with a seed the measurement did not use) stays
on the broken side.
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
from conftest import REPO, SHARED, measured_thresholds, threshold

from vsekit.metrics import chance_rsum


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark_thresholds", REPO / "benchmarks" / "thresholds.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_benchmark()
RECORDED = measured_thresholds()["configs"]
QUICK = [name for name, c in bench.CONFIGS.items() if not c.slow]
FRESH_SEED = 10  # not among the measured seeds


def _passes(metric: str, value: float, mark: float) -> bool:
    """On the working side of ``mark``: at or above it, at or below for median/mean ranks."""
    lower = metric.split("_", 1)[1] in bench.LOWER_IS_BETTER
    return value <= mark if lower else value >= mark


def test_every_configuration_is_measured():
    missing = [n for n, c in bench.CONFIGS.items() if n not in RECORDED and not (c.needs_shared and SHARED is None)]
    assert not missing, f"run: python benchmarks/thresholds.py --slow --only {' '.join(missing)}"


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_pass_marks_lie_between_every_working_and_every_broken_run(name):
    entry = RECORDED[name]
    assert entry["chance_rsum"] == pytest.approx(chance_rsum(entry["test_images"], entry["caps_per_image"]))
    for metric, m in entry["metrics"].items():
        mark = threshold(name, metric)
        working, broken = m["working"]["runs"], m["untrained"]["runs"] + m["shuffled"]["runs"]
        assert len(working) >= 3 and len(m["untrained"]["runs"]) == len(m["shuffled"]["runs"]) == len(working)
        assert all(_passes(metric, v, mark) for v in working), (metric, working, mark)
        assert not any(_passes(metric, v, mark) for v in broken), (metric, broken, mark)
        if metric.endswith("_rsum"):  # broken means "learnt nothing": within twice the chance level
            assert max(broken) <= 2 * entry["chance_rsum"], (metric, broken)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_pass_marks_were_measured_on_the_specs_the_configurations_build_now(name, tmp_path, request):
    """Every recorded setting still has its value (settings added since, at their defaults, do not count)."""
    config = bench.CONFIGS[name]
    if config.needs_shared:
        request.getfixturevalue("shared_data")  # skips (or fails where the suite says so) without the real data
    now, then = _flat(bench.measured_spec(config, tmp_path)), _flat(RECORDED[name]["spec"])
    changed = {k: (v, now.get(k, "<gone>")) for k, v in then.items() if now.get(k, "<gone>") != v}
    assert not changed, f"{name}: rerun python benchmarks/thresholds.py --only {name}; (then, now): {changed}"


@pytest.mark.slow
@pytest.mark.parametrize("variant", bench.BROKEN)
@pytest.mark.parametrize("name", QUICK)
def test_a_broken_model_falls_below_the_pass_mark(name, variant, tmp_path):
    results = bench.run_variant(bench.CONFIGS[name], variant, FRESH_SEED, tmp_path)
    for metric in bench.CONFIGS[name].metrics:
        value = bench.metric_value(results, metric)
        assert math.isfinite(value)
        assert not _passes(metric, value, threshold(name, metric)), (name, variant, metric, value)
