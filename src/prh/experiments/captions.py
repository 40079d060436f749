"""Several captions per item: caption-density levels and caption variants, from the data or from emoji annotations.

Offline, OpenMoji items (hexcode ids) get their annotations from two installable packages: ``emoji`` (the CLDR
short name, e.g. "dog face", and aliases, e.g. "dog") and ``emojis`` (GitHub's gemoji tags, e.g. "pet", and the
Unicode emoji group, e.g. "Animals & Nature"). Any other dataset must carry several captions per item itself (a
``captions`` list in a folder's metadata, or a hub dataset's caption list).
"""

from __future__ import annotations

from dataclasses import dataclass

from prh.data.base import PairedDataset
from prh.errors import InputError
from prh.experiments.base import require

VARIATION_SELECTOR = "\ufe0f"
#: The offline caption-density levels, sparsest first.
EMOJI_LEVELS = ("name", "keywords", "sentence")
#: Templates of the offline caption variants (variant 0 is the dataset's own caption).
TEMPLATES = (
    "{}",
    "an emoji of {}",
    "a picture of {}",
    "an icon showing {}",
    "a drawing of {}",
    "a cartoon of {}",
    "a symbol of {}",
    "a small image of {}",
)


@dataclass(frozen=True)
class EmojiAnnotation:
    """What the annotation packages know about one emoji (lower-case phrases, each once)."""

    name: str
    cldr: str | None
    aliases: tuple[str, ...]
    tags: tuple[str, ...]
    group: str | None

    @property
    def phrases(self) -> list[str]:
        """Names of the emoji: its Unicode name, CLDR short name and aliases, each once."""
        return _unique([self.name, self.cldr or "", *self.aliases])

    @property
    def keywords(self) -> list[str]:
        """Every phrase and tag, each once (the name first)."""
        return _unique([*self.phrases, *self.tags])


def _unique(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = item.strip().lower()
        if key and key not in seen:
            seen.add(key)
            out.append(item.strip())
    return out


def _phrase(code: str) -> str:
    return code.strip(":").replace("_", " ").strip()


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def is_emoji_dataset(dataset: PairedDataset) -> bool:
    """True when the dataset says its ids are emoji code points (OpenMoji and its subsets)."""
    return bool(dataset.emoji_ids)


def emoji_annotation(hexcode: str, unicode_name: str) -> EmojiAnnotation:
    """The annotations of the emoji with code point ``hexcode`` (e.g. ``"1F436"``)."""
    emoji = require("emoji")
    gemoji = require("emojis.db", "emojis")
    try:
        char = chr(int(hexcode, 16))
    except ValueError as err:
        raise InputError(f"item id {hexcode!r} is not an emoji code point (hex), e.g. '1F436'.") from err
    data = emoji.EMOJI_DATA.get(char) or emoji.EMOJI_DATA.get(char + VARIATION_SELECTOR) or {}
    gem = gemoji.get_emoji_by_code(char) or gemoji.get_emoji_by_code(char + VARIATION_SELECTOR)
    aliases = [_phrase(a) for a in data.get("alias", [])] + [_phrase(a) for a in (gem.aliases if gem else [])]
    return EmojiAnnotation(
        name=unicode_name.lower(),
        cldr=_phrase(data["en"]) if data.get("en") else None,
        aliases=tuple(_unique(aliases)),
        tags=tuple(_unique([_phrase(t) for t in (gem.tags if gem else [])])),
        group=gem.category.lower() if gem and gem.category else None,
    )


def emoji_levels(dataset: PairedDataset) -> dict[str, list[str]]:
    """The offline caption-density levels of an OpenMoji dataset, each a list of N captions.

    ``name``: the dataset's caption (the Unicode name, as in `prh demo`); ``keywords``: the name, CLDR short name,
    aliases and tags, comma-separated; ``sentence``: a sentence with all of them and the emoji's group. Every
    caption of a level has at least as many words as the item's caption of the level before.
    """
    levels: dict[str, list[str]] = {level: [] for level in EMOJI_LEVELS}
    for i, hexcode in enumerate(dataset.ids):
        ann = emoji_annotation(hexcode, dataset.captions[i][0])
        levels["name"].append(dataset.captions[i][0])
        levels["keywords"].append(", ".join(ann.keywords))
        sentence = f"An emoji showing {ann.name}"
        if ann.group:
            sentence += f", from the {ann.group} group"
        others = ann.phrases[1:]
        if others:
            sentence += f", also known as {_join(others)}"
        if ann.tags:
            sentence += f", related to {_join(list(ann.tags))}"
        levels["sentence"].append(sentence + ".")
    return levels


def emoji_variants(dataset: PairedDataset, m: int) -> list[list[str]]:
    """``m`` different captions per OpenMoji item: the dataset's caption, then templates over its names."""
    out = []
    for i, hexcode in enumerate(dataset.ids):
        ann = emoji_annotation(hexcode, dataset.captions[i][0])
        phrases = ann.phrases
        caps = [dataset.captions[i][0]]
        for j in range(1, m):
            caps.append(TEMPLATES[j % len(TEMPLATES)].format(phrases[j % len(phrases)]))
        out.append(caps)
    return out


def words(text: str) -> int:
    """Number of words (whitespace-separated) of a caption."""
    return len(text.split())


def dataset_levels(dataset: PairedDataset, max_levels: int) -> dict[str, list[str]]:
    """Caption-density levels of a dataset with several captions per item: level j holds each item's j-th
    shortest caption (by words, ties in the data's order), for j < min(captions per item, ``max_levels``).

    Raises
    ------
    InputError
        Some item has a single caption.
    """
    fewest = _fewest(dataset, "caption-density")
    count = min(fewest, max_levels)
    levels: dict[str, list[str]] = {f"caption-{j + 1}": [] for j in range(count)}
    for caps in dataset.captions:
        ordered = sorted(caps, key=words)
        for j in range(count):
            levels[f"caption-{j + 1}"].append(ordered[j])
    return levels


def dataset_variants(dataset: PairedDataset, m: int) -> list[list[str]]:
    """The first ``min(m, captions per item)`` captions of every item (at least 2, else :class:`InputError`)."""
    count = min(_fewest(dataset, "test-time averaging over captions"), m)
    return [list(caps[:count]) for caps in dataset.captions]


def _fewest(dataset: PairedDataset, what: str) -> int:
    counts = [len(c) for c in dataset.captions]
    fewest = min(counts)
    if fewest < 2:
        item = dataset.ids[counts.index(fewest)]
        raise InputError(
            f"dataset {dataset.name!r} has items with a single caption (e.g. item {item!r}); {what} needs several "
            f"captions per item. Use --dataset openmoji offline (captions from emoji annotations) or a dataset "
            f"whose metadata lists several captions per item (a 'captions' list)."
        )
    return fewest
