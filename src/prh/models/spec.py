"""What a model is: the :class:`ModelSpec` record and the adapter names, modalities and poolings it may take.

What extraction returns is :class:`prh.models.result.FeatureResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES = ("language", "vision")
POOLS = ("mean", "last", "cls")


def __getattr__(name: str) -> object:
    """``ADAPTERS``, ``ADAPTER_POOLS`` and ``ADAPTER_MODALITY``, derived from the adapter declarations
    (:mod:`prh.models.adapters`) when asked for: the names, the poolings each adapter supports (the first is its
    default) and the modality an adapter implies, where it does."""
    if name in ("ADAPTERS", "ADAPTER_POOLS", "ADAPTER_MODALITY"):
        from prh.models.adapters import families

        known = families()
        if name == "ADAPTERS":
            return tuple(known)
        if name == "ADAPTER_POOLS":
            return {key: info.pools for key, info in known.items()}
        return {key: info.modality for key, info in known.items() if info.modality is not None}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class ModelSpec:
    """One named model: where its weights come from and how to run it.

    Parameters
    ----------
    name : str
        Short unique name (``"minilm-l6"``) or a hub id (``"bigscience/bloomz-560m"``).
    source : str
        Hugging Face hub id, local path, timm model name, or ``"zoo:<zoo name>"`` for the offline zoo.
    adapter : str
        A registered adapter family (:func:`prh.models.adapters.adapter_names`).
    modality : str
        ``"language"`` (reads captions) or ``"vision"`` (reads images); an imported model (adapter
        ``"imported"``, :mod:`prh.models.imported`) has a free label (``"brain"``, ``"audio"``, ...).
    family : str
        Model family, e.g. ``"llama"``, ``"vit-dinov2"``.
    params : int or None
        Parameter count as reported by the authors (the adapter also counts them at load time).
    pool : str
        Default pooling: ``"mean"`` (over tokens / spatial positions), ``"last"`` (last real token),
        ``"cls"`` (first token).
    revision : str or None
        Hub revision (branch, tag or commit).
    trust_remote_code : bool
        The entry asks to run the model repository's own Python code; it runs only when the person running prh
        grants it (``--trust-remote-code``, ``ExtractConfig(trust_remote_code=True)``).
    competence : dict
        Reported figures, e.g. ``{"imagenet_top1": 75.1}``.
    options : dict
        Adapter options (``gguf_file``, ``image_size``, ``layers``, ``builder``, ...; their types are checked when
        read from a models file, see :data:`prh.models.registry.OPTION_FIELDS`). A ``builder`` naming code
        (``"package.module:function"``) is imported as given here; from a models file it needs ``--trust-code``
        (``trust_code = true`` in the entry only asks for it).
    description : str
        One line for listings.
    extra : str
        Optional pip extra the adapter needs (``"onnx"``, ``"timm"``, ``"zoo"``) or ``""``.
    """

    name: str
    source: str
    adapter: str
    modality: str
    family: str = ""
    params: int | None = None
    pool: str = "mean"
    revision: str | None = None
    trust_remote_code: bool = False
    competence: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    description: str = ""
    extra: str = ""

    @property
    def zoo_name(self) -> str | None:
        """The offline-zoo name when ``source`` is ``"zoo:<name>"``, else None."""
        return self.source[4:] if self.source.startswith("zoo:") else None

    def __hash__(self) -> int:  # dict fields are not hashable; the name is unique in a registry
        return hash((self.name, self.source, self.adapter))
