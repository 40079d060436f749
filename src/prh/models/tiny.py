"""Tiny randomly initialised models built from configs, for tests, benchmarks and smoke runs without any download.

Every builder is deterministic given ``seed``.
"""

from __future__ import annotations

import torch
from torch import nn

_CORPUS = [
    "grinning face with big eyes",
    "a dog face and a rocket ship",
    "red apple on a wooden table",
    "the quick brown fox jumps over the lazy dog",
    "smiling cat face with heart shaped eyes",
    "black and white photograph of a city street at night",
    "émoji: ünïcode bytes ✓ 🐱",
]


def tiny_tokenizer(vocab_size: int = 300, bos: bool = False):
    """A byte-level BPE tokenizer trained in memory on a few sentences (no pad token, EOS = ``</s>``).

    With ``bos=True`` it prepends ``<s>`` to every text, like Llama tokenizers.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def tiny_causal_lm(
    arch: str = "gpt2", vocab_size: int = 300, seed: int = 0, layers: int = 3, hidden: int = 32
):
    """A tiny random causal LM: ``arch="gpt2"`` (learned absolute positions) or ``"llama"`` (rotary, like SmolLM2)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if arch == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_positions=128,
            n_embd=hidden,
            n_layer=layers,
            n_head=4,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=1,
        )
        model = GPT2LMHeadModel(cfg)
    elif arch == "llama":
        cfg = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=128,
            bos_token_id=0,
            eos_token_id=1,
            tie_word_embeddings=True,
        )
        model = LlamaForCausalLM(cfg)
    else:
        raise ValueError(f"arch must be 'gpt2' or 'llama', got {arch!r}")
    return model.eval()


def tiny_text_encoder(vocab_size: int = 300, seed: int = 0, layers: int = 2, hidden: int = 32):
    """A tiny random BERT encoder."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=1,
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def tiny_vit(seed: int = 0, layers: int = 3, hidden: int = 32, image_size: int = 32, patch: int = 8):
    """A tiny random ViT (transformers ``ViTModel``)."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    cfg = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        image_size=image_size,
        patch_size=patch,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTModel(cfg, add_pooling_layer=False).eval()


class TinyCNN(nn.Module):
    """Stem conv + two conv blocks + linear head; hook ``stem``, ``blocks.0``, ``blocks.1``."""

    def __init__(self, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(
            nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, stride=1, padding=1), nn.ReLU()),
        )
        self.head = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


def tiny_cnn(seed: int = 0, width: int = 8) -> TinyCNN:
    """A tiny random CNN."""
    torch.manual_seed(seed)
    return TinyCNN(width).eval()
