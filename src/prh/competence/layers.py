"""Input layers: a model's first stored layer when it is its input embedding or stem, not a learned representation.

A best layer pair at an input layer (a CNN's stem, a transformer's token or patch embeddings) measures the statistics
of the inputs -- two EfficientNets agree at their stems because they see the same pixels through a few fixed
convolutions, two sentence encoders at their token embeddings because they share a vocabulary -- not a learned
representation. The decision is made from the **layer names** in the feature store's sidecar (the adapters' naming
conventions), never from model names:

- ``stem`` (torch-module EfficientNets), ``embed`` (the Hugging Face text, causal-LM and vision adapters),
  ``hidden_states.0`` (published reference features of language models: ``hidden_states[0]`` is the embedding
  output), and the usual submodule names ``embeddings``, ``embed_tokens``, ``wte``, ``patch_embed``, ``conv_stem``,
  ... (the last dotted component of a hooked submodule's name);
- only index 0 can be an input layer: ``layer.0`` and ``block.0`` are the first transformer / convolutional *blocks*
  and count as learned layers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from prh.errors import InputError

#: Names (of the whole layer, or of the last dotted component of a hooked submodule) that mark an input layer.
INPUT_LAYER_NAMES = (
    "embed",
    "embeds",
    "embedding",
    "embeddings",
    "embed_tokens",
    "tok_embeddings",
    "word_embeddings",
    "wte",
    "patch_embed",
    "patch_embeddings",
    "stem",
    "conv_stem",
    "input",
    "inputs",
)
_HIDDEN_STATE_ZERO = re.compile(r"(^|\.)hidden_states?\.0$", re.IGNORECASE)


def is_input_layer_name(name: str) -> bool:
    """Whether a layer *name* is an input embedding or stem (see the module docstring for the names)."""
    if not isinstance(name, str):
        return False
    text = name.strip()
    if _HIDDEN_STATE_ZERO.search(text):
        return True
    return text.rsplit(".", 1)[-1].lower() in INPUT_LAYER_NAMES or text.lower() in INPUT_LAYER_NAMES


def input_layers(layer_names: Sequence[str] | None) -> list[int]:
    """Indices of a model's input layers: ``[0]`` when its first stored layer is an embedding or stem, else ``[]``.

    Parameters
    ----------
    layer_names : sequence of str or None
        The model's stored layer names in order (the feature store's sidecar ``layer_names``); None or empty (an
        old results folder without names) gives ``[]``: nothing can be flagged without names.

    Returns
    -------
    list of int
        ``[0]`` or ``[]``.

    Examples
    --------
    >>> input_layers(["stem", "block.0", "block.1", "head"]), input_layers(["block.0", "block.1"])
    ([0], [])
    >>> input_layers(["embed", "layer.0"]), input_layers(["hidden_states.0", "hidden_states.1"])
    ([0], [0])
    """
    if not layer_names:
        return []
    return [0] if is_input_layer_name(layer_names[0]) else []


def best_excluding(
    grid: np.ndarray, skip_x: Sequence[int] = (), skip_y: Sequence[int] = ()
) -> tuple[float, int, int]:
    """The best score of a layer grid over the layer pairs that avoid the given rows and columns.

    The same as sweeping only the kept layers: ``prh.sweep`` takes the maximum over the grid, so dropping rows and
    columns of the grid is exact.

    Parameters
    ----------
    grid : (Lx, Ly) array
        Scores of every layer pair (:meth:`prh.align.Results.grid`).
    skip_x, skip_y : sequences of int
        Row (model x) and column (model y) indices to leave out, e.g. ``input_layers(names)``.

    Returns
    -------
    (score, i, j) : (float, int, int)
        The best remaining score and its layer pair (indices into the full grid). When every row or every column
        would be left out (a one-layer model whose only layer is its input), nothing is left out.

    Raises
    ------
    InputError
        ``grid`` is not 2-D or has no finite value.
    """
    values = np.asarray(grid, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise InputError(
            f"grid must be a non-empty (Lx, Ly) array of layer-pair scores, got shape {values.shape}."
        )
    rows = [i for i in range(values.shape[0]) if i not in set(skip_x)] or list(range(values.shape[0]))
    cols = [j for j in range(values.shape[1]) if j not in set(skip_y)] or list(range(values.shape[1]))
    sub = values[np.ix_(rows, cols)]
    if not np.isfinite(sub).any():
        raise InputError("grid holds no finite score; it cannot give a best layer pair.")
    flat = int(np.nanargmax(np.where(np.isfinite(sub), sub, -np.inf)))
    i, j = divmod(flat, sub.shape[1])
    return float(sub[i, j]), rows[i], cols[j]
