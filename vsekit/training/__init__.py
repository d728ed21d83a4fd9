"""Training: :func:`fit` one run, :func:`fit_seeds` repeats; the public door is ``vsekit.train``.

Modules, in the order they build on each other:

- :mod:`~vsekit.training.distributed` the process group of a ``torchrun`` job, the global-batch loss;
- :mod:`~vsekit.training.lock` one writer per run folder; :mod:`~vsekit.training.provenance` versions, commit,
  data checksums; :mod:`~vsekit.training.metrics_log` ``metrics.jsonl``;
- :mod:`~vsekit.training.setup` data, device, seeds, model, loss and optimizer, built before anything is written;
- :mod:`~vsekit.training.state` the resumable ``last`` state and ``--resume``;
- :mod:`~vsekit.training.rundir` run-folder checks, opening files, results;
- :mod:`~vsekit.training.stall` and :mod:`~vsekit.training.loop` the loop itself;
- :mod:`~vsekit.training.orchestration` the entry points re-exported here.
"""

from vsekit.training.orchestration import fit, fit_seeds, summarize_runs

__all__ = ["fit", "fit_seeds", "summarize_runs"]
