"""Alignment while training with Lightning (``lightning.pytorch.Trainer``).

>>> from prh.integrations.lightning import AlignmentCallback
>>> callback = AlignmentCallback(["effnet-lite0"], tokenizer=tokenizer, n=1024, every_n_steps=200)  # doctest: +SKIP
>>> lightning.Trainer(callbacks=[callback], logger=CSVLogger("logs")).fit(module)                 # doctest: +SKIP

Every measurement goes to each of the trainer's loggers (``logger.log_metrics(values, step=global_step)``:
TensorBoard, CSV, W&B, MLflow, ...) and to :attr:`AlignmentCallback.history`. Needs the ``lightning`` extra
(``pip install 'prh[lightning]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prh._optional import optional_import
from prh.errors import InputError
from prh.integrations._monitor import AlignmentMonitor, MonitorConfig

_pl = optional_import("lightning.pytorch", "lightning", purpose="the Lightning callback", error=InputError)


def _default_model(pl_module: Any) -> Any:
    """The Hugging Face model inside a LightningModule: its ``model`` attribute, else the module itself."""
    return getattr(pl_module, "model", pl_module)


class AlignmentCallback(_pl.Callback):
    """Measure the training model's alignment with reference models every ``every_n_steps`` optimiser steps and
    at the end of training.

    Parameters
    ----------
    references : reference model names or sets; see :class:`prh.integrations.MonitorConfig` for them and the
        other keyword options.
    tokenizer : the language model's tokenizer (language models).
    image_transform : the vision model's :class:`prh.models.preprocess.ImageTransform`.
    get_model : ``pl_module -> model`` to run (default: ``pl_module.model`` if it exists, else ``pl_module``).
    config : a ready :class:`~prh.integrations.MonitorConfig` instead of the keyword options.
    """

    def __init__(
        self,
        references: Any = (),
        *,
        tokenizer: Any = None,
        image_transform: Any = None,
        get_model: Callable[[Any], Any] = _default_model,
        config: MonitorConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.monitor = AlignmentMonitor.from_options(config, references, options)
        self.tokenizer = tokenizer
        self.image_transform = image_transform
        self.get_model = get_model
        self._last_step = -1

    @property
    def history(self) -> list[dict[str, float]]:
        """Every measurement so far."""
        return self.monitor.history

    def _measure(self, trainer: Any, pl_module: Any) -> None:
        step = int(trainer.global_step)
        if not trainer.is_global_zero or step == self._last_step:
            return
        self._last_step = step
        metrics = self.monitor.measure(self.get_model(pl_module), self.tokenizer, self.image_transform)
        for logger in trainer.loggers:
            logger.log_metrics(dict(metrics), step=step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > 0 and trainer.global_step % self.monitor.config.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._measure(trainer, pl_module)
