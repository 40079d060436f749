"""Any torch ``nn.Module``: forward hooks on named submodules, 4-D outputs global-average-pooled, PIL/numpy
preprocessing. EfficientNet-Lite0/1/2 from the offline zoo run through here.

A hook layer is a submodule name (its output is recorded) or ``"name:input"`` (the first input of that submodule
is recorded, with a forward pre-hook) — e.g. EfficientNet's stem is ``"_blocks.0:input"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from prh._optional import missing_modules
from prh._torchload import safe_torch_load
from prh.errors import InputError, ModelLoadError
from prh.models.adapters import Requirement, register_adapter
from prh.models.base import Adapter, count_params
from prh.models.batching import LayerBuffer, Progress, call_progress
from prh.models.device import resolve_device, resolve_dtype
from prh.models.guards import forward_guard, loading
from prh.models.loader import image_batches
from prh.models.pooling import pool_any
from prh.models.preprocess import ImageTransform
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec

#: Built-in builders whose models run in ``channels_last`` memory format (convolutional; see
#: :meth:`TorchModuleAdapter.set_channels_last`).
CHANNELS_LAST_BUILDERS = ("efficientnet-lite",)


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, list | tuple) and x:
        return _first_tensor(x[0])
    if isinstance(x, dict) and x:
        return _first_tensor(next(iter(x.values())))
    hidden = getattr(x, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    raise ModelLoadError(f"a hooked module returned {type(x).__name__}, not a tensor")


class HookRecorder:
    """Record the output (or input) of named submodules during one forward pass.

    Parameters
    ----------
    module : nn.Module
        The model.
    layers : list of str
        Submodule names from ``module.named_modules()``, optionally suffixed with ``":input"``.
    """

    def __init__(self, module: nn.Module, layers: list[str]) -> None:
        named = dict(module.named_modules())
        self.layers = list(layers)
        self.values: dict[str, torch.Tensor] = {}
        self.handles = []
        for layer in self.layers:
            name, _, where = layer.partition(":")
            if name not in named:
                close = [n for n in named if n and (n.startswith(name.split(".")[0]))][:8]
                raise InputError(
                    f"layer {name!r} is not a submodule of {type(module).__name__}; "
                    f"names look like {close or list(named)[1:9]}."
                )
            if where == "input":
                self.handles.append(named[name].register_forward_pre_hook(self._pre_hook(layer)))
            elif where in ("", "output"):
                self.handles.append(named[name].register_forward_hook(self._hook(layer)))
            else:
                raise InputError(f"layer {layer!r}: the suffix must be ':input' or ':output'")

    def _hook(self, key: str) -> Callable:
        def hook(_module, _inputs, output):
            self.values[key] = _first_tensor(output)

        return hook

    def _pre_hook(self, key: str) -> Callable:
        def hook(_module, inputs):
            self.values[key] = _first_tensor(inputs)

        return hook

    def collect(self) -> list[torch.Tensor]:
        """The recorded tensors in layer order (raises if a layer did not run), then clear."""
        missing = [k for k in self.layers if k not in self.values]
        if missing:
            raise ModelLoadError(f"layers {missing} did not run during the forward pass")
        out = [self.values[k] for k in self.layers]
        self.values = {}
        return out

    def remove(self) -> None:
        """Detach all hooks."""
        for h in self.handles:
            h.remove()
        self.handles = []


def required_option(spec: ModelSpec, key: str, example: str, what: str) -> object:
    """``spec.options[key]``, or an InputError naming the option, what it is and an example TOML line."""
    if key not in spec.options:
        raise InputError(
            f"model {spec.name!r}: options.{key} is missing; give {what} in its [model.options] "
            f"(e.g. {example})."
        )
    return spec.options[key]


def image_size_option(spec: ModelSpec) -> int:
    """The input size in pixels from ``options.image_size`` (required): a positive integer."""
    size = required_option(
        spec, "image_size", "image_size = 224", "the input size in pixels it was trained at"
    )
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError(
            f"model {spec.name!r}: options.image_size={size!r} must be a positive number of pixels."
        )
    return size


def efficientnet_lite(
    spec: ModelSpec, weights: str | None
) -> tuple[nn.Module, list[str], list[str], ImageTransform]:
    """Build an EfficientNet-Lite from the ``efficientnet-lite-pytorch`` package and load its weights safely
    (``torch.load(weights_only=True)``). Layers: stem, every MBConv block, the pooled head (1280-d).

    ``spec.options``: ``arch`` (the package's architecture name) and ``image_size`` (its input size in pixels),
    both required -- the registry TOML holds them per model.
    """
    arch = required_option(
        spec, "arch", 'arch = "efficientnet-lite0"', "the architecture name of the package"
    )
    size = image_size_option(spec)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ModelLoadError(
            f"model {spec.name!r} needs the package efficientnet-lite-pytorch: run `prh zoo install {spec.zoo_name or spec.name}` "
            f"or `pip install efficientnet-lite-pytorch`."
        ) from err
    try:
        model = EfficientNet.from_name(arch)
    except ValueError as err:
        raise InputError(
            f"model {spec.name!r}: options.arch={arch!r} is not an architecture of the package ({err})."
        ) from err
    if weights:
        state = safe_torch_load(weights, "weights file")
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelLoadError(
                f"weights {weights} do not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
    n_blocks = len(model._blocks)
    layers = ["_blocks.0:input"] + [f"_blocks.{i}" for i in range(n_blocks)] + ["_fc:input"]
    names = ["stem"] + [f"block.{i}" for i in range(n_blocks)] + ["head"]
    return model, layers, names, ImageTransform.imagenet(size)


def import_builder(path: str) -> Callable[..., nn.Module]:
    """``"package.module:function"`` -> the callable (for user-defined torch models in a TOML entry)."""
    mod_name, _, attr = path.partition(":")
    if not attr:
        raise InputError(f"builder={path!r} must look like 'package.module:function'")
    try:
        return getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as err:
        raise ModelLoadError(f"cannot import builder {path!r}: {err}") from err


def _torch_module_availability(spec: ModelSpec) -> tuple[bool, str]:
    """A ``torch-module`` entry needs its builder's module importable and its ``options.weights`` file present
    (checked without importing the builder); built by code from local weights, it never needs the hub."""
    builder = spec.options.get("builder")
    if builder and ":" in str(builder):
        module = str(builder).partition(":")[0]
        if missing_modules([module]):
            return False, f"builder module {module!r} is not importable (install it or fix options.builder)"
    weights = spec.options.get("weights")
    if weights:
        path = Path(str(weights)).expanduser()
        if not path.exists():
            return False, f"weights file {weights} does not exist (options.weights)"
        return True, f"local weights ({path.name})"
    return True, "built locally (no weights file)"


@register_adapter(
    "torch-module",
    pools=("mean", "cls"),
    requires=(
        Requirement(
            "efficientnet",
            ("efficientnet_lite_pytorch",),
            hint="prh zoo install (efficientnet-lite-pytorch)",
            when=lambda spec: spec.options.get("builder") == "efficientnet-lite",
        ),
    ),
    check=_torch_module_availability,
)
class TorchModuleAdapter(Adapter):
    """Forward hooks on named submodules of any ``nn.Module`` over images.

    ``spec.options``:
      - ``builder``: ``"efficientnet-lite"`` or ``"package.module:function"`` returning an ``nn.Module``
        (called with ``**builder_kwargs``);
      - ``weights``: a state-dict file (safetensors or a weights-only torch file); for zoo models it comes from
        :func:`prh.zoo.locate`;
      - ``layers``: submodule names to hook (default: the builder's list);
      - ``image_size``, ``mean``, ``std``, ``resample``: preprocessing (the ``efficientnet-lite`` builder needs
        ``image_size``, the architecture's input size, and ``arch``, its name in the package).
    Outputs of rank 4 (B, C, H, W) are global-average-pooled; rank 3 (B, T, D) use ``pool`` (cls/mean).
    """

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "auto",
        dtype: str = "float32",
        module: nn.Module | None = None,
        layers: list[str] | None = None,
        layer_names: list[str] | None = None,
        transform: ImageTransform | None = None,
        **_ignored,
    ) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        default_names = None
        if module is None:
            with loading(spec):
                module, default_layers, default_names, default_tf = self._build()
            layers = layers or default_layers
            transform = transform or default_tf
        layers = list(spec.options.get("layers") or layers or [])
        if not layers:
            raise InputError(f"model {spec.name!r}: give options.layers (submodule names to hook)")
        if layer_names is None:
            layer_names = (
                default_names if default_names and len(default_names) == len(layers) else list(layers)
            )
        self.layer_names = list(layer_names)
        self.transform = ImageTransform.from_options(spec.options, transform or ImageTransform.imagenet(224))
        self.model = module.to(self.device, self.dtype).eval()
        self.recorder = HookRecorder(self.model, layers)
        self.n_params = count_params(self.model)
        self.channels_last = False
        self.set_channels_last(spec.options.get("builder") in CHANNELS_LAST_BUILDERS)

    def set_channels_last(self, on: bool) -> None:
        """Run the model in ``torch.channels_last`` memory format (NHWC weights and inputs) or not.

        On for the built-in convolutional builders (:data:`CHANNELS_LAST_BUILDERS`): their convolutions run
        faster in NHWC on CPU (EfficientNet-Lite0's whole extraction on 2 CPU cores: 29-34 -> 44 images/s, see
        docs/extraction.md) and the features equal the NCHW ones up to float rounding. Off for user modules
        (a ``.view`` in their forward may need NCHW strides); call this to turn it on.
        """
        self.channels_last = bool(on)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=fmt)

    def _build(self):
        builder = self.spec.options.get("builder", "")
        weights = self.spec.options.get("weights")
        if self.spec.zoo_name is not None:
            from prh.zoo import locate

            weights = str(locate(self.spec.zoo_name))
        if builder == "efficientnet-lite":
            return efficientnet_lite(self.spec, weights)
        if not builder:
            raise InputError(
                f"model {self.spec.name!r}: options.builder is missing ('package.module:function')"
            )
        module = import_builder(builder)(**self.spec.options.get("builder_kwargs", {}))
        if weights:
            if str(weights).endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(weights)
            else:
                state = safe_torch_load(weights, "weights file")
            module.load_state_dict(state)
        return module, [], None, ImageTransform.imagenet(int(self.spec.options.get("image_size", 224)))

    @torch.inference_mode()
    def forward_pixels(self, pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the model on a (B, 3, H, W) batch; returns (model output, raw hooked activations)."""
        pixels = pixels.to(self.device, self.dtype)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)  # no copy when already NHWC
        out = self.model(pixels)
        return out, self.recorder.collect()

    @torch.inference_mode()
    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        buf = LayerBuffer(len(dataset))
        with image_batches(
            dataset, self.transform, batch_size, self.workers, self.device, self.channels_last
        ) as stream:
            for chunk, pixels in stream:
                with forward_guard(self.spec, batch_size):
                    _, acts = self.forward_pixels(pixels)
                    pooled = [pool_any(a, pool) for a in acts]
                buf.put(chunk, pooled)
                call_progress(progress, len(chunk))
        return FeatureResult(
            layers=buf.result(),
            layer_names=list(self.layer_names),
            meta={
                "image_size": list(self.transform.output_size),
                "hooks": list(self.recorder.layers),
                "channels_last": self.channels_last,
            },
        )
