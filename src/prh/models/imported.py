"""Imported models: embeddings computed elsewhere (an API model, another framework, a neural recording), declared
in a models file with ``adapter = "imported"``::

    [[model]]
    name = "my-brain"
    adapter = "imported"
    path = "recordings/v1.npz"          # or a list of files: layers in order (with repeats = true: one per repeat)
    modality = "brain"                  # a free label; different labels make the cross-modal pairs
    family = "fmri"
    citation = "Doe et al. 2025, subject 1"
    id_column = "ids"                   # ids to match rows to the dataset's items (default: an ids/id array)
    keys = ["v1", "v4"]                 # arrays / columns to read, in layer order (default: all)
    layers = ["V1", "V4"]               # layer names
    repeats = false                     # true: (R, N, D) repeated measurements -> mean + noise ceiling
    subset = false                      # true: keep the dataset items the file has

Nothing runs a model: ``prh extract`` / ``prh align`` / :class:`prh.Alignment` import the file(s) into the feature
store (:func:`prh.features.import_features`) when they are missing or changed. Relative paths are relative to the
models file.
"""

from __future__ import annotations

from pathlib import Path

from prh._validation import check_bool, check_choice, check_int, check_str, check_str_list
from prh.errors import InputError
from prh.models.adapters import register_adapter
from prh.models.spec import ModelSpec

#: Poolings an imported model may be stored under (embeddings computed elsewhere: the name they are stored under).
POOLS = ("mean", "cls", "last")

#: Fields of an ``adapter = "imported"`` entry: field -> validator(value, field name) -> clean value.
FIELDS = {
    "name": lambda v, n: check_str(v, n, allow_empty=False),
    "adapter": lambda v, n: check_choice(v, n, ["imported"]),
    "path": lambda v, n: [v] if isinstance(v, str) and v else check_str_list(v, n),
    "modality": lambda v, n: check_str(v, n, allow_empty=False),
    "family": check_str,
    "params": lambda v, n: check_int(v, n, minimum=1, hint="the reported parameter count"),
    "pool": lambda v, n: check_choice(v, n, POOLS),
    "citation": check_str,
    "description": check_str,
    "id_column": lambda v, n: check_str(v, n, allow_empty=False),
    "keys": check_str_list,
    "layers": check_str_list,
    "repeats": check_bool,
    "subset": check_bool,
}


def imported_spec(entry: dict, label: str, base: Path | None = None) -> ModelSpec:
    """The :class:`ModelSpec` of an ``adapter = "imported"`` models-file entry (fields: :data:`FIELDS`)."""
    unknown = [k for k in entry if k not in FIELDS]
    if unknown:
        raise InputError(
            f"{label}: unknown field(s) {unknown} of an imported model; known: {sorted(FIELDS)}."
        )
    values = {key: FIELDS[key](value, key) for key, value in entry.items()}
    if "path" not in values:
        raise InputError(f"{label}: an imported model needs `path` (the file(s) with its embeddings).")
    if "modality" not in values:
        raise InputError(f"{label}: an imported model needs `modality`, a label such as 'vision' or 'brain'.")
    paths = []
    for p in values["path"]:
        path = Path(p).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if "," in str(path):
            raise InputError(f"{label}: path {str(path)!r} may not contain a comma.")
        paths.append(str(path))
    options = {
        k: values[k] for k in ("citation", "id_column", "keys", "layers", "repeats", "subset") if k in values
    }
    return ModelSpec(
        name=values["name"],
        source=",".join(paths),
        adapter="imported",
        modality=values["modality"].strip().lower(),
        family=values.get("family", ""),
        params=values.get("params"),
        pool=values.get("pool", "mean"),
        options=options,
        description=values.get("description", values.get("citation", "imported embeddings")),
    )


__all__ = ["FIELDS", "imported_spec"]


def _files_present(spec: ModelSpec) -> tuple[bool, str]:
    """An imported model is usable when its files exist (they are imported into the store when needed)."""
    missing = [p for p in spec.source.split(",") if p and not Path(p).expanduser().is_file()]
    if missing:
        return False, f"file {missing[0]} does not exist (path of the imported model)"
    return True, "imported from local file(s)"


@register_adapter("imported", pools=POOLS, check=_files_present)
class ImportedModel:
    """Embeddings computed elsewhere, imported into the feature store from files; nothing is run."""

    def __init__(self, spec: ModelSpec, device: str = "auto", dtype: str = "float32") -> None:
        raise InputError(
            f"model {spec.name!r} is imported (adapter = 'imported'): it has no model to run; `prh extract` and "
            f"`prh align` import its file(s) into the feature store (prh.features.import_features)."
        )
