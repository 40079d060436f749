"""Alignment while training with the Hugging Face ``transformers.Trainer``.

>>> from prh.integrations.hf import AlignmentCallback
>>> trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)  # doctest: +SKIP
>>> AlignmentCallback(["effnet-lite0"], n=1024, every_n_steps=200).attach(trainer)          # doctest: +SKIP
>>> trainer.train()  # logs alignment/effnet-lite0/mutual_knn (and .../layer) every 200 steps and at the end

The values go through ``Trainer.log``, so every reporter the trainer has (TensorBoard, CSV, W&B, MLflow, ...)
receives them and they land in ``trainer.state.log_history``; prh depends on none of them. Needs the ``hf`` extra
(``pip install 'prh[hf]'``: the Trainer needs accelerate).
"""

from __future__ import annotations

import warnings
from typing import Any

from prh._optional import optional_import
from prh.errors import InputError
from prh.integrations._monitor import AlignmentMonitor, MonitorConfig

_transformers = optional_import(
    "transformers", "hf", purpose="the transformers Trainer callback", error=InputError
)
optional_import("accelerate", "hf", purpose="the transformers Trainer callback", error=InputError)
TrainerCallback = _transformers.TrainerCallback


class AlignmentCallback(TrainerCallback):
    """Measure the training model's alignment with reference models every ``every_n_steps`` and at the end.

    Parameters
    ----------
    references : reference model names or sets (a list or comma-separated string); see
        :class:`prh.integrations.MonitorConfig` for them and every other option (``metrics``, ``k``, ``n``,
        ``store``, ``dataset``, ``subset``, ``calibrate``, ``every_n_steps``, ``pool``, ``batch_size``, ...).
    config : a ready :class:`~prh.integrations.MonitorConfig` instead of the keyword options.
    image_transform : for vision models, the :class:`prh.models.preprocess.ImageTransform` of their inputs.

    Use :meth:`attach` (it adds the callback and lets it log through the trainer). The model's tokenizer is the
    trainer's ``processing_class``. Only the main process measures (``state.is_world_process_zero``).
    """

    def __init__(
        self,
        references: Any = (),
        *,
        config: MonitorConfig | None = None,
        image_transform: Any = None,
        **options: Any,
    ):
        self.monitor = AlignmentMonitor.from_options(config, references, options)
        self.image_transform = image_transform
        self._trainer = None
        self._last_step = -1

    @property
    def history(self) -> list[dict[str, float]]:
        """Every measurement so far (the logged dicts, ``alignment/seconds`` included)."""
        return self.monitor.history

    def attach(self, trainer: Any) -> AlignmentCallback:
        """Add this callback to ``trainer`` and log through ``trainer.log``; returns the callback."""
        trainer.add_callback(self)
        self._trainer = trainer
        return self

    def _measure(self, state: Any, model: Any, tokenizer: Any) -> None:
        if not state.is_world_process_zero or state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        metrics = self.monitor.measure(model, tokenizer, self.image_transform)
        if self._trainer is not None:
            self._trainer.log(dict(metrics))
        else:
            warnings.warn(
                "AlignmentCallback was not attached with .attach(trainer): its values go to "
                "state.log_history only, not to the trainer's reporters.",
                stacklevel=2,
            )
            state.log_history.append({**metrics, "step": state.global_step})

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.monitor.config.every_n_steps == 0:
            self._measure(state, model, processing_class or kwargs.get("tokenizer"))
        return control

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._measure(state, model, processing_class or kwargs.get("tokenizer"))
        return control
