"""Canonical emotion names, dataset aliases, and class subsets/merges chosen at load time.

Every dataset reader and every model speaks in canonical names, so a model trained on one
dataset can be evaluated on another: shared classes are matched by name, the rest reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from emolens.errors import ConfigError

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)

_ALIASES: dict[str, str] = {
    # anger
    "angry": "anger", "an": "anger", "ang": "anger", "mad": "anger",
    # happy
    "happiness": "happy", "ha": "happy", "hap": "happy", "joy": "happy", "smile": "happy",
    # sad
    "sadness": "sad", "sa": "sad",
    # surprise
    "surprised": "surprise", "su": "surprise", "sur": "surprise",
    # fear
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fe": "fear",
    # disgust
    "disgusted": "disgust", "di": "disgust", "dis": "disgust",
    # neutral
    "ne": "neutral", "neu": "neutral", "calm": "neutral",
    # contempt
    "contemptuous": "contempt", "co": "contempt",
}

#: Label ids of the original fer2013.csv.
FER2013_CSV_LABELS: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def canonical(name: str) -> str:
    """Return the canonical emotion name for ``name`` (case and alias insensitive).

    Raises ValueError for a name that is neither canonical nor a known alias.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in EMOTIONS:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    raise ConfigError(
        f"unknown emotion name {name!r}: expected one of {', '.join(EMOTIONS)} or a common alias"
    )


def canonical_or_none(name: str) -> str | None:
    """Like :func:`canonical` but returns None for an unknown name."""
    try:
        return canonical(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class ClassSelection:
    """Which classes to load, chosen at load time.

    ``keep``: only these classes (in this order); ``drop``: every class but these;
    ``merge``: map several source classes onto one target (e.g. ``{"anger": ["anger", "disgust"]}``).
    Names may be aliases; they are canonicalised. Merges apply before keep/drop.
    """

    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    merge: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keep and self.drop:
            raise ConfigError("choose either keep or drop, not both")

    @classmethod
    def parse(
        cls,
        keep: str | Iterable[str] | None = None,
        drop: str | Iterable[str] | None = None,
        merge: str | Mapping[str, Sequence[str]] | None = None,
    ) -> ClassSelection:
        """Build from CLI-style strings: ``keep="anger,happy"``, ``merge="anger=anger+disgust"``."""
        merged: dict[str, tuple[str, ...]] = {}
        if isinstance(merge, str):
            for item in filter(None, (m.strip() for m in merge.split(";"))):
                target, _, sources = item.partition("=")
                if not sources:
                    raise ConfigError(f"merge {item!r}: expected TARGET=SOURCE+SOURCE")
                merged[canonical(target)] = tuple(canonical(s) for s in sources.split("+"))
        elif merge:
            merged = {canonical(t): tuple(canonical(s) for s in src) for t, src in merge.items()}
        return cls(keep=_names(keep), drop=_names(drop), merge=merged)

    def apply(self, classes: Sequence[str]) -> tuple[list[str], dict[str, str | None]]:
        """Resolve the selection against a dataset's canonical class list.

        Returns the resulting class list and a mapping from each source class to its
        target class (None = excluded).
        """
        source_to_target: dict[str, str | None] = {c: c for c in classes}
        for target, sources in self.merge.items():
            for s in sources:
                if s not in source_to_target:
                    raise ConfigError(f"merge source {s!r} is not a class of this dataset ({', '.join(classes)})")
                source_to_target[s] = target
        targets = list(dict.fromkeys(t for t in source_to_target.values() if t is not None))
        for name in (*self.keep, *self.drop):
            if name not in targets:
                raise ConfigError(f"class {name!r} is not a class of this dataset ({', '.join(targets)})")
        if self.keep:
            result = [c for c in self.keep]
        else:
            result = [c for c in targets if c not in self.drop]
        if not result:
            raise ConfigError("the class selection leaves no classes")
        return result, {s: (t if t in result else None) for s, t in source_to_target.items()}

    @property
    def is_identity(self) -> bool:
        """True when the selection keeps every class as it is."""
        return not (self.keep or self.drop or self.merge)


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(canonical(v) for v in items if v.strip())


def match_classes(model_classes: Sequence[str], data_classes: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """Match a model's classes with a dataset's through canonical names.

    Returns (shared, only_in_model, only_in_data), each in canonical names.
    """
    m = [canonical(c) for c in model_classes]
    d = [canonical(c) for c in data_classes]
    shared = [c for c in d if c in m]
    return shared, [c for c in m if c not in d], [c for c in d if c not in m]


def remap(labels: np.ndarray | Sequence[int], source: Sequence[str | None], target: Sequence[str]) -> np.ndarray:
    """Labels that index ``source`` classes, as int64 indices into ``target`` (matched by name).

    A source class missing from ``target`` (or None: excluded) maps to -1, and so does a label of -1.
    """
    index = {c: i for i, c in enumerate(target)}
    # The trailing -1 is what lookup[-1] finds, so labels already marked -1 stay -1.
    lookup = np.array([index.get(c, -1) if c is not None else -1 for c in source] + [-1], np.int64)
    return lookup[np.asarray(labels, np.int64)]
