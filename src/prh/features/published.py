"""The paper's published features as models: the model sets ``published``, ``published-language``,
``published-vision`` and ``platonic``, usable wherever a model set is (``prh align --models published``,
``prh report``, :class:`prh.Alignment`).

Each catalogue entry (:mod:`prh.features.reference`) becomes a :class:`~prh.models.spec.ModelSpec` named like its
features in the store, ``published/<entry>`` (e.g. ``published/dinov2_l_pool-none``), with adapter
:data:`ADAPTER` (nothing to run: its features are fetched, not extracted). Modality and family come from the
catalogue (data, not code); parameter count and bits-per-byte from the file itself (the store's sidecar records the
file's ``num_params`` and ``bpb``). The features belong to the catalogue's dataset (``minhuh/prh@wit_1024``) and
to nothing else: :func:`check_dataset` refuses another one, naming both.

>>> from prh.features.published import published_specs
>>> [s.name for s in published_specs("published-vision")][:2]                  # doctest: +SKIP
['published/i21k_t_pool-none', 'published/i21k_s_pool-none']
"""

from __future__ import annotations

from collections.abc import Sequence

from prh.errors import InputError, MissingFeaturesError
from prh.features.reference import (
    STORE_PREFIX,
    ReferenceCatalogue,
    ReferenceFeature,
    load_catalogue,
    stored_published,
)
from prh.features.store import DEFAULT_ROOT, FeatureStore
from prh.models.spec import ModelSpec

__all__ = [
    "ADAPTER",
    "MODEL_SETS",
    "check_dataset",
    "entry_of",
    "is_published",
    "missing_message",
    "published_specs",
    "require_fetched",
]

#: The adapter name of a published model (its features are fetched with `prh fetch-reference`, never extracted).
ADAPTER = "published-features"
#: Model sets made of published features: set name -> description. ``published`` is the catalogue's
#: ``published`` selection (the hash-verified files of the built-in catalogue); ``platonic`` the reference's list.
MODEL_SETS = {
    "published": "every published feature file of the active catalogue's `published` selection",
    "published-language": "the language models of `published`",
    "published-vision": "the vision models of `published`",
    "platonic": "the files the reference's platonic/__init__.py names (platonic.Alignment's list)",
}


def is_published(part: str) -> bool:
    """True when ``part`` (one comma-separated item of ``--models``) names published features: a set of
    :data:`MODEL_SETS` or ``published/<entry>``."""
    return part in MODEL_SETS or part.startswith(STORE_PREFIX)


def _members(part: str, catalogue: ReferenceCatalogue) -> list[ReferenceFeature]:
    if part == "platonic":
        return catalogue.select("platonic", "--models")
    if part in MODEL_SETS:
        chosen = [catalogue.features[name] for name in catalogue.published]
        modality = part.partition("-")[2]
        return [e for e in chosen if not modality or e.modality == modality]
    return catalogue.select(part[len(STORE_PREFIX) :], "--models")


def spec_of(entry: ReferenceFeature) -> ModelSpec:
    """The model spec of one catalogue entry (named like its features in the store)."""
    return ModelSpec(
        name=entry.store_model,
        source=f"published:{entry.file}",
        adapter=ADAPTER,
        modality=entry.modality,
        family=entry.family,
        pool=entry.pool,
        description=f"published features of {entry.model} ({entry.pool})",
        options={"published": entry.name},
    )


def published_specs(
    parts: str | Sequence[str], catalogue: ReferenceCatalogue | None = None
) -> list[ModelSpec]:
    """Model specs of published sets and names (``"published"``, ``"published-vision,published/llama_7b"``), in
    order without repeats.

    Raises
    ------
    InputError
        An item that is not a published set or ``published/<entry>`` of the catalogue (with the closest names).
    """
    catalogue = catalogue or load_catalogue()
    items = [p.strip() for p in (parts.split(",") if isinstance(parts, str) else parts) if p and p.strip()]
    out: dict[str, ModelSpec] = {}
    for part in items:
        if not is_published(part):
            raise InputError(
                f"--models: {part!r} is not a published set ({', '.join(MODEL_SETS)}) or published/NAME."
            )
        for entry in _members(part, catalogue):
            out.setdefault(entry.store_model, spec_of(entry))
    if not out:
        raise InputError(f"--models {','.join(items)!r} selects no published features in {catalogue.path}.")
    return list(out.values())


def entry_of(name: str, catalogue: ReferenceCatalogue | None = None) -> ReferenceFeature:
    """The catalogue entry of the model ``published/<entry>``."""
    catalogue = catalogue or load_catalogue()
    return catalogue.select(name[len(STORE_PREFIX) :] if name.startswith(STORE_PREFIX) else name)[0]


def missing_message(names: Sequence[str], store: FeatureStore) -> str:
    """One line naming the ``prh fetch-reference`` command that fetches the entries ``names``."""
    where = "" if str(store.root) == DEFAULT_ROOT else f" --store {store.root}"
    return (
        f"published features of {', '.join(names)} are not in the feature store {store.root}; run "
        f"`prh fetch-reference {','.join(names)}{where}`."
    )


def require_fetched(
    specs: Sequence[ModelSpec], store: FeatureStore, catalogue: ReferenceCatalogue | None = None
) -> None:
    """Raise :class:`~prh.errors.MissingFeaturesError` (one line, the command to run) when any published model of
    ``specs`` is not in ``store``."""
    catalogue = catalogue or load_catalogue()
    present = stored_published(store, catalogue)
    missing = [entry_of(s.name, catalogue).name for s in specs if s.adapter == ADAPTER]
    missing = [name for name in missing if name not in present]
    if missing:
        raise MissingFeaturesError(missing_message(missing, store))


def check_dataset(name: str | None, catalogue: ReferenceCatalogue | None = None) -> str:
    """The dataset name a run with published models uses: the catalogue's (``minhuh/prh@wit_1024``).

    ``name`` is the dataset the run was asked for (None: not given). A dataset other than the catalogue's is refused
    (published features never mix with another dataset's features).
    """
    catalogue = catalogue or load_catalogue()
    ds = catalogue.dataset
    accepted = {ds.name, ds.revision, f"{ds.repo}/{ds.revision}"}
    if name is not None and name not in accepted and name.split("-n")[0] not in _slugs(ds.name):
        raise InputError(
            f"--dataset {name!r}: the published features belong to {ds.name} (N={ds.n}) and are never mixed with "
            f"features of another dataset; drop --dataset (or pass --dataset {ds.revision}), or score {name!r} "
            f"without the published models."
        )
    return ds.name


def _slugs(name: str) -> set[str]:
    from prh.features.store import slug

    return {slug(name)}
