"""``python -m torch.distributed.run ... tests/_ddp_crash.py run SPEC ...``: the CLI, dying at a training step.

Every rank calls ``os._exit(3)`` instead of its ``VSEKIT_TEST_CRASH_AT``-th
training step, as a killed job would; used to test ``--resume`` of a
multi-process run.
"""

import os

from vsekit.cli import cli
from vsekit.training import loop

CRASH_AT = int(os.environ["VSEKIT_TEST_CRASH_AT"])
_real = loop.train_step
_calls = [0]


def _step(*args, **kwargs):
    _calls[0] += 1
    if _calls[0] == CRASH_AT:
        os._exit(3)
    return _real(*args, **kwargs)


loop.train_step = _step
cli.main(obj={}, prog_name="vsekit")
