"""Image preprocessing without torchvision: PIL resize + center crop, numpy rescale and normalisation.

:class:`ImageTransform` reproduces the usual Hugging Face image-processor / timm eval pipeline from a handful of
numbers (size, crop, resample, mean, std), read from a model's ``preprocessor_config.json`` when it has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from prh.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class ImageTransform:
    """PIL image -> (3, H, W) float32 array.

    Steps: convert to RGB; resize (``resize_mode="shortest_edge"``: the short side becomes ``size[0]`` keeping the
    aspect ratio; ``"exact"``: to ``size`` = (height, width)); center crop to ``crop`` = (height, width) if given;
    multiply by ``rescale`` (1/255); subtract ``mean`` and divide by ``std`` per channel.
    """

    size: tuple[int, int] = (256, 256)
    crop: tuple[int, int] | None = (224, 224)
    resize_mode: str = "shortest_edge"
    resample: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    rescale: float = 1.0 / 255.0

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the produced arrays."""
        return self.crop if self.crop is not None else self.size

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Transform one image; returns a C-contiguous (3, H, W) float32 array."""
        if not isinstance(image, Image.Image):
            raise InputError(f"expected a PIL image, got {type(image).__name__}")
        img = image.convert("RGB")
        resample = RESAMPLE[self.resample]
        w, h = img.size
        if self.resize_mode == "shortest_edge":
            target = self.size[0]
            if w <= h:
                new_w, new_h = target, max(1, int(round(h * target / w)))
            else:
                new_w, new_h = max(1, int(round(w * target / h))), target
        elif self.resize_mode == "exact":
            new_h, new_w = self.size
        else:
            raise InputError(f"resize_mode={self.resize_mode!r} is not 'shortest_edge' or 'exact'")
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), resample=resample)
        if self.crop is not None:
            ch, cw = self.crop
            left = int(round((new_w - cw) / 2.0))
            top = int(round((new_h - ch) / 2.0))
            img = img.crop((left, top, left + cw, top + ch))  # pads with black if the crop is larger
        arr = np.asarray(img, dtype=np.float32) * np.float32(self.rescale)
        arr = (arr - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """Transform a list of images into a (B, 3, H, W) float32 tensor."""
        return torch.from_numpy(np.stack([self(im) for im in images]))

    @classmethod
    def imagenet(
        cls, image_size: int = 224, crop_pct: float | None = None, resample: str = "bicubic"
    ) -> ImageTransform:
        """Classic ImageNet eval transform: resize the short side to ``image_size / crop_pct`` (default: +32 px),
        center crop ``image_size``, ImageNet mean/std."""
        resize = int(round(image_size / crop_pct)) if crop_pct else image_size + 32
        return cls(size=(resize, resize), crop=(image_size, image_size), resample=resample)

    @classmethod
    def from_hf_config(cls, config: dict, default_size: int = 224) -> ImageTransform:
        """Build from a Hugging Face ``preprocessor_config.json`` dictionary (ViT, DINOv2, CLIP, SigLIP, ...)."""
        size = config.get("size", default_size)
        crop_cfg = config.get("crop_size") if config.get("do_center_crop", False) else None
        if isinstance(size, int):
            # old configs: an int means shortest edge when cropping follows, else a square
            mode, sz = ("shortest_edge", (size, size)) if crop_cfg else ("exact", (size, size))
        elif "shortest_edge" in size:
            mode, sz = "shortest_edge", (int(size["shortest_edge"]),) * 2
        elif "height" in size and "width" in size:
            mode, sz = "exact", (int(size["height"]), int(size["width"]))
        else:
            mode, sz = "exact", (default_size, default_size)
        crop: tuple[int, int] | None = None
        if crop_cfg is not None:
            crop = (
                (crop_cfg, crop_cfg)
                if isinstance(crop_cfg, int)
                else (int(crop_cfg["height"]), int(crop_cfg["width"]))
            )
        if not config.get("do_resize", True):
            mode, sz = "exact", crop or sz
        resample_code = config.get("resample", 2)
        names = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
        resample = (
            names.get(int(resample_code), "bilinear")
            if isinstance(resample_code, int)
            else str(resample_code)
        )
        normalize = config.get("do_normalize", True)
        mean = tuple(config.get("image_mean", IMAGENET_MEAN)) if normalize else (0.0, 0.0, 0.0)
        std = tuple(config.get("image_std", IMAGENET_STD)) if normalize else (1.0, 1.0, 1.0)
        rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        return cls(
            size=sz, crop=crop, resize_mode=mode, resample=resample, mean=mean, std=std, rescale=rescale
        )

    @classmethod
    def from_options(cls, options: dict, default: ImageTransform) -> ImageTransform:
        """Override ``default`` with ``options`` keys image_size / resize / crop / mean / std / resample."""
        kw: dict = {}
        if "image_size" in options:
            s = int(options["image_size"])
            kw["crop"] = (s, s)
            kw["size"] = (int(options.get("resize", s + 32)),) * 2
        if "mean" in options:
            kw["mean"] = tuple(float(v) for v in options["mean"])
        if "std" in options:
            kw["std"] = tuple(float(v) for v in options["std"])
        if "resample" in options:
            kw["resample"] = str(options["resample"])
        if not kw:
            return default
        fields = {**default.__dict__, **kw}
        return cls(**fields)


def read_preprocessor_config(source: str, revision: str | None = None) -> dict | None:
    """Read ``preprocessor_config.json`` from a local folder or the hub cache; None when there is none."""
    path = Path(source)
    if path.is_dir():
        f = path / "preprocessor_config.json"
        return json.loads(f.read_text()) if f.exists() else None
    try:
        from transformers.utils import cached_file

        f = cached_file(
            source, "preprocessor_config.json", revision=revision, _raise_exceptions_for_missing_entries=False
        )
    except OSError:
        return None
    return json.loads(Path(f).read_text()) if f else None
