"""Measure the quality thresholds the test suite asserts: the working model against broken variants.

    python benchmarks/thresholds.py                      # every quick configuration, 5 seeds
    python benchmarks/thresholds.py --slow               # also the slow tests' configurations (3 seeds)
    python benchmarks/thresholds.py --only mini_gru_contrastive_1ep --out /tmp/t.json

For every configuration a quality test trains (the same spec, built by the same
function the test uses, on one thread), this trains the **working** model for
each seed, and two **broken** variants of it:

* ``untrained``: the model the run starts from (same seed, vocabulary and
  initialisation, built by the trainer), evaluated without a training step;
* ``shuffled``: trained exactly like the working model, but on caption-image
  pairs shuffled with a fixed seed (``cap2img`` of the train split permuted by
  ``numpy.random.default_rng(SHUFFLE_SEED + seed)``): a model that can learn
  nothing true about which caption goes with which image.

Each metric's threshold is the midpoint between the broken variants' best run
and the working model's worst run (``higher`` metrics; the mirror image for
median ranks). The tests assert the working run reaches it (``tests/conftest.py``:
``threshold(config, metric)``); ``tests/test_thresholds.py`` (slow) re-runs the
broken variants and asserts they stay on the other side. A configuration whose
working and broken runs overlap is written with ``"separates": false`` and
makes the script exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

# only sys.path changes before the imports below (anything else would leave them mid-module)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the tests' spec builders (conftest)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine
from conftest import SHARED, tiny_spec_text

import vsekit
from vsekit import testing, training
from vsekit.evaluate import evaluate_split
from vsekit.metrics import chance_rsum
from vsekit.spec import Spec
from vsekit.training import distributed
from vsekit.training.setup import RunData, Setup, load_data

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "thresholds.json"
EXAMPLES = REPO / "examples"
TESTPLUGIN = REPO / "tests" / "plugin_pkgs" / "vsekit-testplugin"
SHUFFLE_SEED = 1000
VARIANTS = ("working", "untrained", "shuffled")
BROKEN = ("untrained", "shuffled")
LOWER_IS_BETTER = {"i2t_medr", "t2i_medr", "i2t_meanr", "t2i_meanr"}


@attrs.define
class Config:
    """One trained configuration of the test suite: how to build its spec, which tests use it, what they assert."""

    name: str
    used_by: list[str]
    build: Callable[[], dict[str, Any] | str | Path]  # a spec dict or a spec file
    overrides: tuple[str, ...] = ()  # ``--set`` strings, as the test applies them
    metrics: tuple[str, ...] = ("test_rsum",)  # SPLIT_KEY with SPLIT in (test, valid)
    plugin: Path | None = None
    slow: bool = False  # used by slow tests only: measured with --slow
    needs_shared: bool = False


def _mini_e2e() -> str:
    return tiny_spec_text("vsekit:f8k_mini", train={"max_epochs": 1, "batch_size": 128, "lr": 0.005,
                                                     "disp_freq": 5})


def _real_f8k() -> str:
    assert SHARED is not None
    return ('name = "f8k"\n[data]\ntype = "flickr8k"\n'
            f'root = "{SHARED / "flickr8k"}"\n'
            f'[data.features]\ntype = "precomputed"\ndir = "{SHARED / "flickr8k-effnet-lite0"}"\n'
            '[model]\ndim = 64\n[model.sentence_encoder]\ntype = "gru"\ndim_word = 32\n'
            '[loss]\ntype = "contrastive"\n[train]\nmax_epochs = 1\nbatch_size = 128\nlr = 0.002\n')


CONFIGS: dict[str, Config] = {c.name: c for c in [
    Config("mini_gru_contrastive_1ep", ["tests/test_train_e2e.py::test_learns_well_above_chance"], _mini_e2e,
           metrics=("test_rsum", "valid_rsum")),
    Config("tiny_infonce_3ep", ["tests/test_device.py::test_cuda_training_matches_the_cpu_run"],
           lambda: testing.tiny_spec(train={"max_epochs": 3, "disp_freq": 1})),
    Config("tiny_infonce_3ep_bf16", ["tests/test_device.py::test_bf16_autocast_trains_on_cpu_close_to_fp32"],
           lambda: testing.tiny_spec(train={"max_epochs": 3, "disp_freq": 1}),
           overrides=("train.precision='bf16'",)),
    Config("retrieval_tiny_64d_2ep", ["tests/test_retrieval.py::test_text_to_image_and_image_to_text"],
           lambda: testing.tiny_spec(train={"max_epochs": 2}),
           overrides=("model.dim=64", "model.sentence_encoder.dim_word=64"),
           metrics=("test_rsum", "test_i2t_medr", "test_t2i_medr", "test_i2t_r10", "test_t2i_r10")),
    Config("testplugin_meanpool_1ep", ["tests/test_plugins.py::test_a_plugin_component_trains_from_a_spec"],
           lambda: testing.tiny_spec(sentence_encoder={"type": "meanpool", "dim_word": 16},
                                     loss={"type": "cosine_hinge"}, train={"lr": 0.005}),
           plugin=TESTPLUGIN),
    Config("custom_encoder_example_1ep", ["tests/test_plugins.py::test_custom_encoder_example_trains_and_reloads"],
           lambda: EXAMPLES / "custom_encoder.toml", overrides=("train.max_epochs=1",)),
    Config("custom_cnn_tiny_1ep", ["tests/test_plugins.py::test_custom_encoder_via_imports_and_short_name"],
           lambda: testing.tiny_spec(imports=[str(EXAMPLES / "custom_encoder.py")],
                                     sentence_encoder={"type": "cnn", "dim_word": 16, "channels": 16, "widths": [3]},
                                     train={"lr": 0.005})),
    Config("custom_encoder_example_6ep", ["tests/test_plugins.py::test_custom_encoder_example_as_written"],
           lambda: EXAMPLES / "custom_encoder.toml", slow=True),
    Config("real_f8k_gru_contrastive_1ep", ["tests/test_train_e2e.py::test_real_flickr8k_reader_trains"], _real_f8k,
           slow=True, needs_shared=True),
]}


@contextlib.contextmanager
def plugin_context(config: Config) -> Iterator[None]:
    """The configuration's plugin made discoverable (as the test does), or nothing."""
    if config.plugin is None:
        yield
    else:
        with testing.installed_plugin(config.plugin):
            yield


def load_spec(config: Config, seed: int, spec_dir: Path) -> Spec:
    """The configuration's spec with ``train.seed = seed`` on one thread, on the CPU where the pass marks were
    measured (call inside :func:`plugin_context`)."""
    built = config.build()
    if isinstance(built, str):  # TOML text, as the tests write it to a file
        path = spec_dir / f"{config.name}.toml"
        path.write_text(built, encoding="utf-8")
        built = path
    return vsekit.load_spec(built, [*config.overrides, "train.threads=1", "train.device=cpu", f"train.seed={seed}"])


def portable(value: Any) -> Any:
    """``value`` (a spec dict) with this checkout's and the shared data's absolute paths written ``<repo>``,
    ``<shared>``."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str):
        for root, name in ((REPO, "<repo>"), (SHARED, "<shared>")):
            if root is not None:
                value = value.replace(str(root.resolve()), name).replace(str(root), name)
    return value


def measured_spec(config: Config, spec_dir: Path) -> dict[str, Any]:
    """The resolved spec of ``config`` for seed 0, as recorded in the result file (paths made portable)."""
    with plugin_context(config):
        return portable(load_spec(config, 0, spec_dir).to_dict())


def shuffled_pairs(data: RunData, seed: int) -> RunData:
    """``data`` with the train split's caption -> image map permuted (each image keeps 5 captions, now random ones)."""
    perm = np.random.default_rng(SHUFFLE_SEED + seed).permutation(data.train.cap2img)
    return RunData(attrs.evolve(data.train, cap2img=perm), data.valid, data.test)


def run_variant(config: Config, variant: str, seed: int, workdir: Path) -> dict[str, dict[str, float]]:
    """Train (or not) one variant of ``config`` for ``seed``; return ``{"test": metrics, "valid": metrics}``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    old_threads = torch.get_num_threads()
    try:
        with plugin_context(config):
            spec = load_spec(config, seed, workdir)
            data = load_data(spec)
            if variant == "untrained":
                # the run's starting point: the trainer seeds, builds the vocabulary and initialises the model
                setup = Setup.build(spec, data, torch.device("cpu"), distributed.Dist())
                model = setup.model.eval()
                return {"test": evaluate_split(model, data.test, setup.metric, folds=spec.eval.folds),
                        "valid": evaluate_split(model, data.valid, setup.metric)}
            if variant == "shuffled":
                data = shuffled_pairs(data, seed)
            out = workdir / f"{config.name}-{variant}-seed{seed}"
            res = training.fit(spec, out, quiet=True, force=True, data=data)
            return {"test": res["test"], "valid": res["valid"]}
    finally:
        torch.set_num_threads(old_threads)


def metric_value(results: dict[str, dict[str, float]], metric: str) -> float:
    split, key = metric.split("_", 1)
    return float(results[split][key])


def choose_threshold(metric: str, working: list[float], broken: list[float]) -> dict[str, Any]:
    """The midpoint between the worst working run and the best broken run; ``separates`` when they do not overlap."""
    key = metric.split("_", 1)[1]
    lower = key in LOWER_IS_BETTER
    worst_working = max(working) if lower else min(working)
    best_broken = min(broken) if lower else max(broken)
    separates = worst_working < best_broken if lower else worst_working > best_broken
    return {"direction": "lower_is_better" if lower else "higher_is_better",
            "threshold": round((worst_working + best_broken) / 2, 3), "separates": separates,
            "worst_working": worst_working, "best_broken": best_broken}


def stats(values: list[float]) -> dict[str, Any]:
    return {"min": min(values), "mean": statistics.fmean(values), "max": max(values), "runs": values}


def measure(config: Config, seeds: list[int], workdir: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, dict[str, float]]]] = {v: [] for v in VARIANTS}
    for variant in VARIANTS:
        for seed in seeds:
            t0 = time.perf_counter()
            r = run_variant(config, variant, seed, workdir)
            runs[variant].append(r)
            print(f"  {config.name:32s} {variant:9s} seed {seed}: test rsum {r['test']['rsum']:6.1f}, "
                  f"valid rsum {r['valid']['rsum']:6.1f} ({time.perf_counter() - t0:.1f} s)", flush=True)
    with plugin_context(config):
        spec = load_spec(config, seeds[0], workdir)
        test = load_data(spec).test
    caps_per_image = round(len(test.captions) / test.n_images)
    entry: dict[str, Any] = {
        "used_by": config.used_by,
        "seeds": seeds,
        "overrides": list(config.overrides),
        "spec": measured_spec(config, workdir),
        "test_images": test.n_images,
        "caps_per_image": caps_per_image,
        "chance_rsum": chance_rsum(test.n_images, caps_per_image),
        "metrics": {},
    }
    for metric in config.metrics:
        values = {v: [metric_value(r, metric) for r in runs[v]] for v in VARIANTS}
        broken = [x for v in BROKEN for x in values[v]]
        entry["metrics"][metric] = {**choose_threshold(metric, values["working"], broken),
                                    **{v: stats(values[v]) for v in VARIANTS}}
    return entry


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="result file (default: %(default)s)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per variant (default: %(default)s)")
    ap.add_argument("--slow", action="store_true", help="also the configurations only slow tests train")
    ap.add_argument("--slow-seeds", type=int, default=3, help="seeds for those (default: %(default)s)")
    ap.add_argument("--only", nargs="+", choices=sorted(CONFIGS), help="just these configurations (merged into "
                    "an existing --out file)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    names = args.only or [n for n, c in CONFIGS.items() if args.slow or not c.slow]
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    configs = previous.get("configs", {}) if args.only else {}
    t_all = time.perf_counter()
    command = "python " + " ".join(["benchmarks/thresholds.py", *(argv if argv is not None else sys.argv[1:])])
    with tempfile.TemporaryDirectory(prefix="vsekit-thresholds-") as tmp:
        for name in names:
            config = CONFIGS[name]
            if config.needs_shared and SHARED is None:
                print(f"{name}: skipped (no ../shared/data)")
                continue
            t0 = time.perf_counter()
            n_seeds = args.slow_seeds if config.slow else args.seeds
            print(f"{name} ({', '.join(config.used_by)})", flush=True)
            configs[name] = {"command": command, "date": _now(), **measure(config, list(range(n_seeds)), Path(tmp))}
            configs[name]["seconds"] = round(time.perf_counter() - t0, 1)
            for metric, m in configs[name]["metrics"].items():
                span = {v: f"{m[v]['min']:.1f}..{m[v]['max']:.1f}" for v in VARIANTS}
                print(f"  -> {metric}: working {span['working']}, untrained {span['untrained']}, shuffled "
                      f"{span['shuffled']}: threshold {m['threshold']:.1f}"
                      f"{'' if m['separates'] else '  DOES NOT SEPARATE'}", flush=True)
    payload = {
        "command": command,
        "date": _now(),
        "machine": machine(1),
        "vsekit": vsekit.__version__,
        "shuffle_seed": f"numpy.random.default_rng({SHUFFLE_SEED} + seed).permutation(train cap2img)",
        "rule": "threshold = midpoint of the worst working run and the best broken run (untrained or shuffled, "
                "any seed); higher is better except for median/mean ranks",
        "seconds_this_command": round(time.perf_counter() - t_all, 1),
        "configs": dict(sorted(configs.items())),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {out} ({payload['seconds_this_command']:.0f} s)")
    bad = [f"{n}:{m}" for n, c in configs.items() for m, v in c["metrics"].items() if not v["separates"]]
    if bad:
        print("working and broken runs overlap: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
