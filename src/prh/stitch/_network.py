"""A vision model seen as a chain of hook points: activations at every point, and the model run *from* a point.

:class:`Staged` wraps an image adapter of :mod:`prh.models` (one with a ``recorder`` of named hook points, a
``transform`` and ``forward_pixels``, e.g. ``torch-module``). Running the model from point j with a given tensor
(:meth:`Staged.run_from`) replaces the output of the submodule at point j (or its input, for ``name:input`` points)
with that tensor through a forward hook, so everything after point j runs on it; the part before point j runs on a
small dummy image and is discarded (its cost is negligible). :meth:`Staged.check_run_from` verifies on real images
that this reproduces the model's own outputs at every point, and falls back to full-size dummies when it does not
(e.g. a model whose later layers depend on the input size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from prh.errors import InputError

#: Side of the dummy image fed to the part of the model before the stitching point.
DUMMY_SIZE = 32


class Staged:
    """An image model with named hook points (see the module docstring).

    Parameters
    ----------
    adapter : an image adapter with ``recorder`` (hooked submodules), ``layer_names``, ``transform``, ``model``.
    name : the model's name (for messages).
    """

    def __init__(self, adapter: object, name: str) -> None:
        for attr in ("recorder", "transform", "model", "layer_names", "forward_pixels"):
            if not hasattr(adapter, attr):
                raise InputError(
                    f"model {name!r} cannot be stitched: its adapter ({type(adapter).__name__}) does not expose "
                    f"named hook points over images; use an image model of the torch-module adapter (e.g. "
                    f"effnet-lite0) or a torch module with options.layers."
                )
        self.adapter = adapter
        self.name = name
        self.model = adapter.model
        self.points: list[str] = list(adapter.recorder.layers)
        self.point_names: list[str] = list(adapter.layer_names)
        self.dummy_size: int | None = DUMMY_SIZE
        for p in self.model.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixels(self, images: Sequence) -> torch.Tensor:
        """(B, 3, H, W) float32 pixels of PIL ``images`` with the model's own preprocessing."""
        return torch.stack([torch.as_tensor(self.adapter.transform(im)) for im in images]).to(self.device)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits (B, classes), activations at every point) of one batch."""
        out, acts = self.adapter.forward_pixels(pixels)
        return out.float(), [a.float() for a in acts]

    def _dummy(self, batch: int) -> torch.Tensor:
        size = self.dummy_size or max(self.adapter.transform.output_size)
        return torch.zeros(batch, 3, size, size, device=self.device)

    def run_from(self, point: int, tensor: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """Logits (B, classes) of the model with the activation at ``point`` replaced by ``tensor`` (B, ...).

        With ``grad=True`` the graph is kept (gradients flow into ``tensor``; the model's weights are frozen).
        """
        name, _, where = self.points[point].partition(":")
        module = dict(self.model.named_modules())[name]
        if where == "input":

            def pre_hook(_module, inputs):
                return (tensor.to(inputs[0].dtype), *inputs[1:])

            handle = module.register_forward_pre_hook(pre_hook)
        else:

            def hook(_module, _inputs, output):
                return tensor.to(output.dtype if isinstance(output, torch.Tensor) else tensor.dtype)

            handle = module.register_forward_hook(hook)
        dummy = self._dummy(tensor.shape[0])
        if getattr(self.adapter, "channels_last", False):
            dummy = dummy.contiguous(memory_format=torch.channels_last)
        try:
            if grad:
                with torch.enable_grad():
                    out = self.model(dummy)
            else:
                with torch.inference_mode():
                    out = self.model(dummy)
        finally:
            handle.remove()
            self.adapter.recorder.values = {}
        return out.float()

    def check_run_from(self, pixels: torch.Tensor, points: Sequence[int], atol: float = 1e-3) -> None:
        """Make sure :meth:`run_from` reproduces the model's logits from its own activations at ``points``; use
        full-size dummies if the small ones do not (and refuse the model if neither does)."""
        logits, acts = self.forward(pixels)
        for dummy in (DUMMY_SIZE, None):
            self.dummy_size = dummy
            try:
                ok = all(
                    torch.allclose(self.run_from(p, acts[p]), logits, atol=atol, rtol=1e-3) for p in points
                )
            except RuntimeError:
                ok = False
            if ok:
                return
        raise InputError(
            f"model {self.name!r}: replacing the activation at a hook point does not reproduce its outputs "
            f"(the layers after the point do not depend on it alone), so it cannot be stitched there."
        )


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size): average pooling when shrinking, bilinear when growing, identity if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def spatial_points(staged: Staged, acts: Sequence[torch.Tensor]) -> list[int]:
    """Indices of the points whose activations are spatial maps (B, C, H, W)."""
    return [i for i, a in enumerate(acts) if a.ndim == 4]
