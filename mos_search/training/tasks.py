"""What training needs from each task: its data, batches, the loss of one batch, validation.

`TranslationTask` (parallel corpus, label-smoothed NLL of the target) and `MaskedLMTask` (text
corpus, cross-entropy at the masked positions) share one interface, so `train.Trainer` runs both
with the same sampling, checkpointing and resume.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from mos_search.arch import ArchBase
from mos_search.constants import PAD_ID
from mos_search.data.batches import collate, encode_split, token_batches
from mos_search.data.encoded import EncodedSplit
from mos_search.data.tokenizer import Tokenizer
from mos_search.models.losses import label_smoothed_nll, validation_loss
from mos_search.models.supernet import ElasticModel


def forward_fn(model: nn.Module, arch: ArchBase) -> Callable[..., Tensor]:
    """The model's forward for `arch` (a supernet is told the arch; a standalone model is it)."""
    if isinstance(model, ElasticModel):
        return lambda *inputs: model(*inputs, arch)
    return model


def on_cpu(model: nn.Module, forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """`forward` taking and returning CPU tensors whatever device `model` is on (evaluation)."""
    device = next(model.parameters()).device
    if device.type == "cpu":
        return forward
    return lambda *inputs: (
        forward(*(x.to(device) if isinstance(x, Tensor) else x for x in inputs)).float().cpu()
    )


class TrainingTask(Protocol):
    """Data and loss of one task, as the trainer uses them."""

    vocab_size: int
    tokenizer_path: Path
    digest: str

    def batches(self, epoch: int) -> list[list[int]]:
        """Training batches (lists of example indices) of an epoch, fixed by (seed, epoch)."""
        ...

    def batch(self, indices: list[int], epoch: int, device: torch.device) -> tuple[Tensor, ...]:
        """The tensors of one training batch on `device`, built once per step."""
        ...

    def loss(
        self, model: nn.Module, arch: ArchBase, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, Tensor, int]:
        """(summed training loss, summed NLL, target tokens) of `arch` on a batch."""
        ...

    def valid_nll(self, model: nn.Module, arch: ArchBase) -> float:
        """Validation NLL per target token (nats)."""
        ...


def training_split(corpus: Any, tokenizer: Tokenizer, max_len: int) -> EncodedSplit:
    """The training pairs: memory-mapped from the corpus's token store when it has an up-to-date
    one (`mos-search data tokenize`), else tokenised into memory now."""
    from mos_search.data.tokenized import open_training_split

    source, target = (path.name for path in corpus.split_paths("train"))
    stored = open_training_split(corpus.root, source, target, max_len)
    return stored if stored is not None else encode_split(corpus, "train", tokenizer, max_len)


class TranslationTask:
    """Parallel corpus; teacher-forced, label-smoothed NLL of the target side."""

    def __init__(self, config: Any) -> None:
        from mos_search.data.corpus import open_corpus

        corpus = open_corpus(config.data)
        tokenizer = Tokenizer(corpus.tokenizer_path)
        self.vocab_size, self.digest = tokenizer.vocab_size, corpus.digest()
        self.tokenizer_path = Path(corpus.tokenizer_path)
        self.config = config
        self.train_data = training_split(corpus, tokenizer, config.max_len)
        self.valid_data = encode_split(corpus, "valid", tokenizer).subset(config.valid_limit)

    def batches(self, epoch: int) -> list[list[int]]:
        """See `TrainingTask`."""
        return token_batches(self.train_data, self.config.max_tokens, self.config.seed, epoch)

    def batch(self, indices: list[int], epoch: int, device: torch.device) -> tuple[Tensor, ...]:
        """See `TrainingTask`: (source, previous target, target)."""
        batch = collate(self.train_data, indices)
        return batch.src.to(device), batch.prev.to(device), batch.target.to(device)

    def loss(
        self, model: nn.Module, arch: ArchBase, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, Tensor, int]:
        """See `TrainingTask`."""
        src, prev, target = batch
        logits = forward_fn(model, arch)(src, prev)
        loss, nll = label_smoothed_nll(logits, target, self.config.label_smoothing)
        return loss, nll, int((target != PAD_ID).sum())

    def valid_nll(self, model: nn.Module, arch: ArchBase) -> float:
        """See `TrainingTask`."""
        return validation_loss(on_cpu(model, forward_fn(model, arch)), self.valid_data)


class MaskedLMTask:
    """Text corpus; BERT masking, cross-entropy at the masked positions (no label smoothing)."""

    def __init__(self, config: Any) -> None:
        from mos_search.data.text import encode_text_split, open_text_corpus
        from mos_search.models.mlm import check_mask_token

        corpus = open_text_corpus(config.data)
        tokenizer = Tokenizer(corpus.tokenizer_path)
        self.mask_id = check_mask_token(tokenizer.mask_id, str(config.data))
        self.vocab_size, self.digest = tokenizer.vocab_size, corpus.digest()
        self.tokenizer_path = Path(corpus.tokenizer_path)
        self.config = config
        self.train_data = encode_text_split(corpus, "train", tokenizer, config.max_len)
        self.valid_data = encode_text_split(corpus, "valid", tokenizer, config.max_len).subset(
            config.valid_limit
        )

    def batches(self, epoch: int) -> list[list[int]]:
        """See `TrainingTask`."""
        cfg = self.config
        return token_batches(self.train_data, cfg.max_tokens, cfg.seed, epoch, by_source=True)

    def batch(self, indices: list[int], epoch: int, device: torch.device) -> tuple[Tensor, ...]:
        """See `TrainingTask`: (masked inputs, targets at the masked positions, PAD elsewhere)."""
        from mos_search.models.mlm import masked_batch

        inputs, targets = masked_batch(
            self.train_data, indices, self.vocab_size, self.mask_id, self.config.seed, epoch
        )
        return inputs.to(device), targets.to(device)

    def loss(
        self, model: nn.Module, arch: ArchBase, batch: tuple[Tensor, ...]
    ) -> tuple[Tensor, Tensor, int]:
        """See `TrainingTask`."""
        from mos_search.models.mlm import masked_nll

        nll, count = masked_nll(forward_fn(model, arch), *batch)
        return nll, nll, count

    def valid_nll(self, model: nn.Module, arch: ArchBase) -> float:
        """See `TrainingTask`."""
        from mos_search.models.mlm import masked_lm_nll

        forward = on_cpu(model, forward_fn(model, arch))
        return masked_lm_nll(forward, self.valid_data, self.vocab_size, self.mask_id)


def make_task(task: str, config: Any) -> TrainingTask:
    """The training task of a search space's task name."""
    return MaskedLMTask(config) if task == "bert" else TranslationTask(config)
