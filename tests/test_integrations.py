"""Trainer callbacks: inside a real transformers.Trainer and a real Lightning Trainer on a tiny random model, they
log alignment/<reference>/<metric> with the value a direct prh.Alignment.score gives on the same weights, and leave
the model's training mode and the tokenizer as they were."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import prh
from prh.cli import app
from prh.errors import InputError
from prh.integrations import AlignmentMonitor, MonitorConfig, infer_adapter
from prh.models.hf_causal_lm import HFCausalLMAdapter
from prh.models.spec import ModelSpec
from prh.models.tiny import tiny_causal_lm, tiny_tokenizer, tiny_vit

N = 24


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder dataset of N images with captions, a tiny ViT reference extracted into a store."""
    root = tmp_path_factory.mktemp("integrations")
    tiny_vit(seed=0).save_pretrained(root / "vit")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "apple", "dog", "cat", "rocket", "face", "tree", "house", "sun", "moon"]
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(N):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(
                json.dumps({"file_name": f"img{i}.png", "text": " ".join(rng.choice(words, size=3 + i % 4))})
                + "\n"
            )
    models = root / "models.toml"
    models.write_text(
        f'[[model]]\nname = "ref-vit"\nsource = "{root / "vit"}"\nadapter = "hf-vision"\nmodality = "vision"\npool = "cls"\n'
    )
    store = root / "store"
    args = ["extract", "--models", "ref-vit", "--dataset", str(data), "--store", str(store)]
    args += ["--models-file", str(models), "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    from prh.models import load_user_config

    load_user_config(models)
    return {"data": str(data), "store": str(store)}


def _options(workspace, **extra):
    return {
        "references": ["ref-vit"],
        "dataset": workspace["data"],
        "store": workspace["store"],
        "k": 3,
        **extra,
    }


def _direct(workspace, model, tokenizer, metric="mutual_knn"):
    """The reference value: prh's own adapter + prh.Alignment.score, with nothing of the callbacks."""
    alignment = prh.Alignment(dataset=workspace["data"], models="ref-vit", store=workspace["store"])
    spec = ModelSpec(name="direct", source="-", adapter="hf-causal-lm", modality="language", pool="mean")
    feats = (
        HFCausalLMAdapter(spec, device="cpu", model=model, tokenizer=tokenizer)
        .extract(alignment.dataset)
        .layers
    )
    entry = alignment.score(feats, metric=metric, k=3)["ref-vit"]
    return entry["score"] if isinstance(entry, dict) else entry.score


def test_monitor_restores_training_mode_and_tokenizer(workspace):
    model, tok = tiny_causal_lm("gpt2"), tiny_tokenizer()
    tok.padding_side = "left"
    model.train()
    monitor = AlignmentMonitor(_options(workspace, metrics=["mutual_knn", "cknna"]))
    out = monitor.measure(model, tok)
    assert model.training and tok.padding_side == "left" and tok.pad_token is None
    assert set(out) >= {
        "alignment/ref-vit/mutual_knn",
        "alignment/ref-vit/mutual_knn/layer",
        "alignment/ref-vit/cknna",
    }
    assert out["alignment/ref-vit/mutual_knn"] == pytest.approx(_direct(workspace, model, tok), abs=1e-12)
    assert infer_adapter(model) == "hf-causal-lm" and infer_adapter(tiny_vit()) == "hf-vision"


def test_monitor_calibration_logs_a_p_value(workspace):
    model, tok = tiny_causal_lm("gpt2"), tiny_tokenizer()
    out = AlignmentMonitor(_options(workspace, calibrate=19)).measure(model, tok)
    p = out["alignment/ref-vit/mutual_knn/p_value"]
    assert 1 / 20 <= p <= 1.0


def test_monitor_config_errors_are_one_line():
    with pytest.raises(InputError, match="every_n_steps"):
        MonitorConfig(references="a", every_n_steps=0)
    with pytest.raises(InputError, match="metrics"):
        MonitorConfig(references="a", metrics=["no_such_metric"])
    with pytest.raises(InputError, match="references"):
        MonitorConfig(references=[])
    with pytest.raises(InputError, match="K >= 19"):
        MonitorConfig(references="a", calibrate=5)
    with pytest.raises(InputError, match="Hugging Face"):
        infer_adapter(torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="either config"):
        AlignmentMonitor.from_options(MonitorConfig(references="a"), ["b"], {})


class _Captions(torch.utils.data.Dataset):
    def __init__(self, tok, texts):
        self.items = [tok(t, return_tensors="pt")["input_ids"][0] for t in texts]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": self.items[i], "labels": self.items[i]}


def test_hf_trainer_logs_the_direct_score(workspace, tmp_path):
    from transformers import Trainer, TrainingArguments

    from prh.integrations.hf import AlignmentCallback

    torch.manual_seed(0)
    model, tok = tiny_causal_lm("gpt2"), tiny_tokenizer()
    tok.pad_token = tok.eos_token  # the Trainer's collator pads
    texts = [f"a red apple number {i}" for i in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=1,
        max_steps=4,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Captions(tok, texts), processing_class=tok)
    callback = AlignmentCallback(**_options(workspace, every_n_steps=2)).attach(trainer)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "alignment/ref-vit/mutual_knn" in e]
    assert [e["step"] for e in logged] == [2, 4]
    assert len(callback.history) == 2 and model.training
    assert logged[-1]["alignment/ref-vit/mutual_knn"] == pytest.approx(
        _direct(workspace, model, tok), abs=1e-12
    )


def test_lightning_trainer_logs_the_direct_score(workspace, tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from prh.integrations.lightning import AlignmentCallback

    torch.manual_seed(0)
    model, tok = tiny_causal_lm("gpt2"), tiny_tokenizer()
    data = _Captions(tok, [f"a blue dog number {i}" for i in range(8)])

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(data, batch_size=1)

    callback = AlignmentCallback(tokenizer=tok, **_options(workspace, every_n_steps=2))
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=CSVLogger(str(tmp_path), name="run"),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module())
    rows = list(csv.DictReader(open(trainer.logger.log_dir + "/metrics.csv")))
    logged = [r for r in rows if r.get("alignment/ref-vit/mutual_knn")]
    assert [int(r["step"]) for r in logged] == [2, 4]
    assert float(logged[-1]["alignment/ref-vit/mutual_knn"]) == pytest.approx(
        _direct(workspace, model, tok), abs=1e-6
    )
