"""Model stitching on tiny random CNNs: exact recovery of a rotated copy, controls, fine-tuning, the section."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prh.errors import InputError
from prh.models import ModelSpec
from prh.models.preprocess import ImageTransform
from prh.models.torch_module import TorchModuleAdapter
from prh.stitch import StitchConfig, stitch, write_stitch
from prh.stitch._fit import Normal, apply_map

LAYERS = ["stem", "blocks.0", "blocks.1", "blocks.2"]


class Tiny(nn.Module):
    """stem (8 ch, /2) -> 3 blocks (12, 16, 16 ch) -> global pool -> 10 classes."""

    def __init__(self, seed: int, rotate: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU()),
        )
        self.head = nn.Linear(16, 10)
        self.register_buffer("center", torch.zeros(16))
        self.register_buffer("scale", torch.ones(16))

    def forward(self, x):
        return self.head((self.blocks(self.stem(x)).mean(dim=(2, 3)) - self.center) / self.scale)


class Rotated(nn.Module):
    """``base``'s layers, with an orthogonal channel map Q applied after block 1 (and undone inside block 2)."""

    def __init__(self, base: Tiny, q: torch.Tensor) -> None:
        super().__init__()
        self.stem = base.stem
        b0, b1, b2 = base.blocks
        rot = nn.Conv2d(16, 16, 1, bias=False)
        rot.weight.data = q[:, :, None, None].clone()
        unrot = nn.Conv2d(16, 16, 1, bias=False)
        unrot.weight.data = q.T[:, :, None, None].clone()
        self.blocks = nn.Sequential(b0, nn.Sequential(b1, rot), nn.Sequential(unrot, b2))
        self.head = base.head
        self.center, self.scale = base.center, base.scale

    def forward(self, x):
        return self.head((self.blocks(self.stem(x)).mean(dim=(2, 3)) - self.center) / self.scale)


class Images:
    """N random images with a little structure (a class-like blob colour)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.pics = []
        for i in range(n):
            arr = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            arr[6:18, 6:18] = (60 * (i % 4), 255 - 50 * (i % 5), 40 * (i % 6))
            self.pics.append(Image.fromarray(arr))

    def __len__(self) -> int:
        return len(self.pics)

    def image(self, i: int) -> Image.Image:
        return self.pics[i]


TF = ImageTransform(size=(20, 20), crop=(16, 16))


def calibrated(seed: int) -> Tiny:
    """A Tiny whose pooled features are standardised on the test images, so its classes vary over items."""
    net = Tiny(seed)
    x = TF.batch([Images(96).image(i) for i in range(96)])
    with torch.no_grad():
        pooled = net.blocks(net.stem(x)).mean(dim=(2, 3))
    net.center.copy_(pooled.mean(dim=0))
    net.scale.copy_(pooled.std(dim=0) + 1e-6)
    return net


def adapter(module: nn.Module, name: str) -> TorchModuleAdapter:
    spec = ModelSpec(name=name, source="local", adapter="torch-module", modality="vision")
    tf = TF
    return TorchModuleAdapter(spec, device="cpu", module=module, layers=LAYERS, transform=tf)


CFG = StitchConfig(n=64, blocks=4, batch_size=32, noise_clusters=4, k=5, ridge=1e-8)


def test_least_squares_matches_lstsq():
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(5, 6, 3, 3, generator=rng)
    w_true, b_true = torch.randn(4, 6, generator=rng), torch.randn(4, generator=rng)
    y = apply_map(x, w_true, b_true)
    normal = Normal()
    for part in (x[:2], x[2:]):
        z = normal.add_sender(part)
        normal.add_target("y", z, apply_map(part, w_true, b_true))
    w, b = normal.solve("y", 0.0)
    assert torch.allclose(w, w_true, atol=1e-4) and torch.allclose(b, b_true, atol=1e-4)
    assert torch.allclose(apply_map(x, w, b), y, atol=1e-4)


def test_rotated_copy_stitches_exactly_and_controls_sit_low():
    base = calibrated(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))
    a = adapter(Rotated(base, q), "rotated")
    b = adapter(base, "base")
    result = stitch(a, b, CFG, dataset=Images(64))
    assert result.agreement.shape == (4, 4)
    # A's block 1 is B's block 1 rotated: the least-squares 1x1 conv recovers Q^T exactly
    assert result.agreement[2, 2] == 1.0
    assert result.kl[2, 2] < 1e-6
    assert min(result.controls["self"]) == 1.0  # self-stitching A -> A: the ceiling
    assert np.all(result.penalty >= 0)
    # the shuffled pairing cannot transport item information
    assert result.controls["shuffled"][2] < 0.9
    assert -1.0 <= result.spearman <= 1.0


def test_noise_sender_stays_near_chance_on_unrelated_models():
    """Independent random models: the noise sender's agreement is far below the real sender's best cell."""
    a, b = adapter(calibrated(1), "one"), adapter(calibrated(2), "two")
    result = stitch(a, b, CFG.replace(n=96), dataset=Images(96))
    c = result.controls
    assert max(c["noise"]) <= c["chance"] + 0.35
    assert max(c["noise"]) < result.agreement.max()


def test_finetune_lowers_training_kl_and_section(tmp_path):
    base = calibrated(0)
    a, b = adapter(calibrated(5), "five"), adapter(base, "base")
    cfg = CFG.replace(blocks=2, finetune_epochs=2, lr=1e-2)
    result = stitch(a, b, cfg, dataset=Images(64))
    assert len(result.finetuned["kl"]) == 2
    for losses in result.finetuned["train_kl"]:  # per epoch; Adam lowers the training KL it minimises
        assert losses[-1] < losses[0]
    folder = write_stitch(result, tmp_path)
    data = json.loads((folder / "stitch.json").read_text())
    assert data["model_a"] == "five" and len(data["agreement"]) == 2
    assert (folder / "figure.png").stat().st_size > 1000
    html = next((tmp_path / "sections").glob("*stitch*.html")).read_text()
    assert "Model stitching" in html
    from prh.report import build_report

    assert "Model stitching" in build_report(tmp_path).read_text()


def test_bad_config_raises():
    with pytest.raises(InputError, match="test_fraction"):
        StitchConfig(test_fraction=1.0)
    with pytest.raises(InputError, match="held-out"):
        StitchConfig(n=8, test_fraction=0.1)


def test_language_models_are_refused_with_the_reason():
    with pytest.raises(InputError, match="tokenizer"):
        stitch("smollm2-135m", "effnet-lite0", CFG)
