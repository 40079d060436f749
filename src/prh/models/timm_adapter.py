"""timm vision transformers, the reference implementation's path: the CLS token after every ``blocks.i``.

Optional extra: ``pip install prh[timm]`` (timm needs torchvision). timm is imported only when such a model is
built; without it a :class:`ModelLoadError` says which extra to install.
"""

from __future__ import annotations

from prh._optional import optional_import
from prh.errors import ModelLoadError
from prh.models.adapters import Requirement, register_adapter
from prh.models.guards import loading
from prh.models.preprocess import ImageTransform
from prh.models.spec import ModelSpec
from prh.models.torch_module import TorchModuleAdapter


def transform_from_timm_cfg(cfg: dict) -> ImageTransform:
    """timm ``pretrained_cfg`` (input_size, crop_pct, interpolation, mean, std) -> :class:`ImageTransform`."""
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875) or 1.0)
    resample = str(cfg.get("interpolation", "bicubic"))
    base = ImageTransform.imagenet(size, crop_pct=crop_pct, resample=resample)
    return ImageTransform(
        size=base.size,
        crop=base.crop,
        resample=resample,
        mean=tuple(cfg.get("mean", base.mean)),
        std=tuple(cfg.get("std", base.std)),
    )


def import_timm():
    """Import timm or raise a ModelLoadError naming the extra (any import failure counts: torchvision built for
    another torch fails with more than ImportError)."""
    return optional_import("timm", "timm", purpose="timm models (timm and torchvision, built for your torch)")


def _timm_hub(spec: ModelSpec):
    """timm weights live in the hub repository ``timm/<model name>``."""
    from prh.models._availability import hub_check

    return hub_check(f"timm/{spec.source}", spec.revision)


@register_adapter(
    "timm",
    pools=("cls", "mean"),
    modality="vision",
    requires=(Requirement("timm", ("timm", "torchvision")),),
    check=_timm_hub,
)
class TimmAdapter(TorchModuleAdapter):
    """A timm model with hooks on ``blocks.0 .. blocks.{L-1}`` (block outputs = the reference's
    ``blocks.i.add_1``); pooling ``cls`` (reference) or ``mean``. ``spec.source`` is the timm model name."""

    def __init__(
        self, spec: ModelSpec, device: str = "auto", dtype: str = "float32", model=None, **_ignored
    ) -> None:
        if model is None:
            timm = import_timm()
            with loading(spec):
                model = timm.create_model(spec.source, pretrained=True)
        if not hasattr(model, "blocks"):
            raise ModelLoadError(
                f"timm model {spec.source!r} has no `blocks`; give options.layers to hook instead"
            )
        n = len(model.blocks)
        cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
        super().__init__(
            spec,
            device=device,
            dtype=dtype,
            module=model,
            layers=[f"blocks.{i}" for i in range(n)],
            layer_names=[f"block.{i}" for i in range(n)],
            transform=transform_from_timm_cfg(cfg),
        )
