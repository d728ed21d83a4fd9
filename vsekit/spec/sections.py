"""The plain sections of a spec: ``[model]`` (less its components), ``[train]``, ``[eval]``, ``[output]``,
``[vocab]``."""

from __future__ import annotations

import attrs

from vsekit import limits
from vsekit.config import FieldError, check, in_range, non_negative, one_of, path_field, positive
from vsekit.metrics import TIE_RULES
from vsekit.spec.component import Component


@attrs.frozen
class VocabSpec:
    """Vocabulary built from the training captions only."""

    min_count: int = attrs.field(default=1, validator=positive())
    max_size: int | None = attrs.field(default=None, validator=check(lambda v: 0 < v <= limits.MAX_WORDS,
                                                                      f"an integer in [1, {limits.MAX_WORDS:,}]"))


@attrs.frozen
class ModelSpec:
    """``[model]``: the joint embedding size ``dim``, caption handling and the two encoder components."""

    dim: int = attrs.field(default=1024, validator=positive())
    #: feed one ``<eos>`` step after every caption, in training and at encode time (the reference did)
    append_eos: bool = False
    #: the name of a tokenizer in ``vsekit.data.tokenize.TOKENIZERS`` (checked by ``vsekit validate`` and when
    #: the model is built): it turns caption text into tokens in training, evaluation, encoding and retrieval
    tokenizer: str = "regex"
    sentence_encoder: Component | None = None
    image_encoder: Component | None = None


def _seed(_inst: object, attribute: attrs.Attribute, value: int) -> None:
    """The ``[train] seed`` validator: :func:`vsekit.limits.seed_problem`; raises :class:`FieldError`."""
    if problem := limits.seed_problem(value):
        raise FieldError(attribute.name, problem)


def _is_device(value: str) -> bool:
    if value == "auto":
        return True
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True


@attrs.frozen
class TrainSpec:
    """``[train]``: epochs, batch size, optimiser and schedule, logging/validation/saving cadence, device."""

    max_epochs: int = attrs.field(default=15, validator=positive())
    batch_size: int = attrs.field(default=128, validator=check(lambda v: v >= 2, "an integer >= 2"))
    lr: float = attrs.field(default=2e-4, validator=positive())
    weight_decay: float = attrs.field(default=0.0, validator=non_negative())
    grad_clip: float = attrs.field(default=2.0, validator=non_negative())
    maxlen_w: int = attrs.field(default=100, validator=positive())
    lr_schedule: str = attrs.field(default="none", validator=one_of("none", "step", "cosine"))
    lr_step_epochs: int = attrs.field(default=15, validator=positive())
    lr_gamma: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0))
    #: linear learning-rate warm-up over the first this many steps (0: none), then the schedule as it would be
    warmup_steps: int = attrs.field(default=0, validator=non_negative())
    early_stopping: int = attrs.field(default=0, validator=non_negative())
    disp_freq: int = attrs.field(default=10, validator=positive())
    valid_freq: int = attrs.field(default=0, validator=non_negative())
    #: also save the resumable ``last`` state every this many steps (0: at epoch ends only, which is always done)
    save_freq: int = attrs.field(default=0, validator=non_negative())
    bucket: bool = True
    #: the first seed of the run (``--seeds N`` runs seed .. seed + N - 1); in [0, 2**32) (vsekit.limits)
    seed: int = attrs.field(default=0, validator=_seed)
    threads: int = attrs.field(default=0, validator=check(
        lambda v: 0 <= v <= limits.MAX_THREADS, f"an integer in [0, {limits.MAX_THREADS}] (0: torch's default)"))
    #: "auto": CUDA when this machine has it, else CPU (the device used is logged and in results.json)
    device: str = attrs.field(default="auto",
                              validator=check(_is_device, "'auto' or a torch device: 'cpu', 'cuda', 'cuda:1', ..."))
    precision: str = attrs.field(default="fp32", validator=one_of("fp32", "bf16", "fp16"))
    tensorboard: bool = False
    valid_split: str = "dev"


@attrs.frozen
class EvalSpec:
    """``[eval]``: the split the final table is computed on, its metric, folds, tie rule and caption protocol."""

    split: str = "test"
    metric: Component | None = None
    folds: int | None = attrs.field(default=None, validator=positive())
    #: how the final table ranks ties: "pessimistic" (a tie counts against the query) or "reference" (the
    #: reference's stable argsort order); dev-rsum model selection always uses "pessimistic"
    ties: str = attrs.field(default="pessimistic", validator=one_of(*TIE_RULES))
    #: refuse an evaluated split (dev or test) with an image of fewer than 5 captions (by default such images
    #: are evaluated with the captions they have, warned about and counted)
    strict_protocol: bool = False
    #: also report COCO 1K (mean of 5 folds) and 5K (the whole split); unset: when the data is COCO and the
    #: split holds exactly 5,000 images (``vsekit.evaluate.wants_coco_rows``)
    coco_1k_and_5k: bool | None = None


@attrs.frozen
class OutputSpec:
    """``[output]``: the run folder (``dir``) and whether the resumable ``last`` state is kept."""

    dir: str | None = path_field(None)
    save_last: bool = True
