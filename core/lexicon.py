"""Words that name checkable attributes of a photo, and counterfactual variants of a query.

A query such as "two red cars at night" names attributes of classes a photo either has or has not:
a count, a colour, an object, a place, a time of day. Changing one of those words gives a
*counterfactual variant* ("three red cars at night", "two blue cars at night", "two red boats at
night", "two red cars at sunset"). A photo that fully matches the query should not be described
better by any of its variants; a photo that one variant describes clearly better differs from the
query in that variant's class. :mod:`core.search` uses this to grade results and to decide whether
anything matches at all, with the model's own scores: no labelled data, no per-model thresholds.

The lexicon is plain English for real photos, and a superset of the scene world's words (the
starter model's world). A model with a closed vocabulary (:class:`Vocabulary`) only gets variants
made of words it knows, and tells which words of a query it does not know.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["CLASSES", "Slot", "Variant", "Vocabulary", "parse", "phrases", "tokens", "variants"]

# class -> value -> phrases (a phrase is one or more words; the first phrase of a value is the word a
# variant uses for it). Values of one class exclude each other on one photo.
_COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue", "navy"),
    "purple": ("purple", "violet", "lilac"),
    "pink": ("pink",),
    "brown": ("brown",),
    "grey": ("grey", "gray"),
    "white": ("white",),
    "black": ("black",),
}
_COUNTS: dict[str, tuple[str, ...]] = {
    "one": ("one", "1", "a single", "single", "a lone", "lone", "just one", "solitary"),
    "two": ("two", "2", "a pair of", "pair of", "a couple of", "couple of"),
    "three": ("three", "3", "a trio of", "trio of"),
    "four": ("four", "4"),
    "five": ("five", "5"),
}
_TIMES: dict[str, tuple[str, ...]] = {
    "day": ("daytime", "day", "daylight", "midday", "noon", "afternoon", "morning", "sunny day"),
    "sunset": ("sunset", "dusk", "evening", "sundown", "sunrise", "dawn", "twilight", "golden hour"),
    "night": (
        "night",
        "nighttime",
        "night time",
        "night-time",
        "midnight",
        "moonlight",
        "moonlit",
        "after dark",
    ),
}
_PLACES: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "seaside", "shore", "coast", "sea"),
    "snow": ("snow", "snowy", "snow-covered", "snow covered", "icy", "winter"),
    "meadow": ("meadow", "grassy field", "grass", "grassy", "countryside", "pasture"),
    "city": ("city", "town", "downtown", "urban", "street", "skyline"),
    "desert": ("desert", "dunes", "sand dunes", "oasis"),
    "forest": ("forest", "woods", "woodland", "jungle"),
    "mountains": ("mountains", "mountain"),
    "lake": ("lake", "river", "pond"),
    "park": ("park", "garden"),
    "indoors": ("indoors", "kitchen", "living room", "bedroom", "office"),
}
# object -> (singular, plural) forms; the first pair is what a variant uses
_OBJECTS: dict[str, tuple[tuple[str, str], ...]] = {
    "car": (("car", "cars"), ("automobile", "automobiles"), ("sedan", "sedans")),
    "house": (("house", "houses"), ("cottage", "cottages")),
    "tree": (("tree", "trees"),),
    "boat": (
        ("boat", "boats"),
        ("sailboat", "sailboats"),
        ("sailing boat", "sailing boats"),
        ("yacht", "yachts"),
    ),
    "balloon": (
        ("balloon", "balloons"),
        ("hot-air balloon", "hot-air balloons"),
        ("hot air balloon", "hot air balloons"),
    ),
    "kite": (("kite", "kites"),),
    "dog": (("dog", "dogs"), ("puppy", "puppies")),
    "cat": (("cat", "cats"), ("kitten", "kittens")),
    "bird": (("bird", "birds"),),
    "horse": (("horse", "horses"),),
    "person": (("person", "people"), ("man", "men"), ("woman", "women"), ("child", "children")),
    "bicycle": (("bicycle", "bicycles"), ("bike", "bikes")),
    "bus": (("bus", "buses"),),
    "truck": (("truck", "trucks"),),
    "train": (("train", "trains"),),
    "airplane": (("airplane", "airplanes"), ("plane", "planes")),
    "flower": (("flower", "flowers"),),
    "bridge": (("bridge", "bridges"),),
    "building": (("building", "buildings"), ("tower", "towers")),
}

CLASSES: tuple[str, ...] = ("count", "colour", "object", "place", "time")
# the classes whose values are phrase lists (objects have singular and plural forms instead)
_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": _COLOURS,
    "count": _COUNTS,
    "time": _TIMES,
    "place": _PLACES,
}
# A colour right before one of these words describes the scenery ("white snow", "orange sky"),
# not the objects: it is not a slot.
_SCENERY = frozenset(
    {
        *("sky", "skies", "snow", "sand", "grass", "field", "fields", "sea", "ocean", "water", "waves"),
        *("sunset", "sunrise", "dusk", "night", "light", "lights", "glow", "dunes", "desert", "beach"),
        *("city", "street", "streets", "hills", "moon", "sun", "clouds", "background", "horizon"),
        *("hour", "mountains"),
    }
)
_WORD = re.compile(r"[a-z]+|\d+")


def tokens(text: str) -> list[str]:
    """Lower-case words and numbers of ``text`` (hyphens split words, other marks are dropped)."""
    return _WORD.findall(text.lower().replace("-", " "))


@dataclass(frozen=True)
class _Entry:
    cls: str
    value: str
    plural: bool | None = None  # for objects: the form the phrase is in


def _build() -> dict[tuple[str, ...], _Entry]:
    table: dict[tuple[str, ...], _Entry] = {}
    for cls, values in _PHRASES.items():
        for value, phrases in values.items():
            for phrase in phrases:
                table[tuple(tokens(phrase))] = _Entry(cls, value)
    for value, forms in _OBJECTS.items():
        for singular, plural in forms:
            table[tuple(tokens(singular))] = _Entry("object", value, False)
            table[tuple(tokens(plural))] = _Entry("object", value, True)
    return table


_TABLE = _build()
_LONGEST = max(len(k) for k in _TABLE)


@dataclass(frozen=True)
class Slot:
    """One attribute a query names: its class, value, and where it is (token positions)."""

    cls: str
    value: str
    start: int
    end: int
    plural: bool | None = None


@dataclass(frozen=True)
class Variant:
    """The query with one slot changed to another value of its class."""

    cls: str
    value: str
    text: str


def phrases(
    words: Sequence[str], table: Mapping[tuple[str, ...], T], longest: int
) -> Iterator[tuple[int, int, T]]:
    """``(start, end, entry)`` of each phrase of ``table`` in ``words``, left to right, taking the
    longest phrase (up to ``longest`` words) that starts at each position."""
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            entry = table.get(tuple(words[i : i + n]))
            if entry is not None:
                yield i, i + n, entry
                i += n
                break
        else:
            i += 1


def parse(words: list[str]) -> list[Slot]:
    """The attribute slots of a tokenised query, longest phrase first, left to right.

    A class named twice keeps both slots (both are varied); a colour right before a scenery word
    is not a slot.
    """
    slots: list[Slot] = []
    for start, end, entry in phrases(words, _TABLE, _LONGEST):
        following = words[end] if end < len(words) else ""
        if entry.cls == "colour" and following in _SCENERY:
            continue
        slots.append(Slot(entry.cls, entry.value, start, end, entry.plural))
    return slots


def _form(cls: str, value: str, plural: bool | None) -> list[str]:
    if cls == "object":
        singular, plural_form = _OBJECTS[value][0]
        return tokens(plural_form if plural else singular)
    return tokens(_PHRASES[cls][value][0])


def variants(text: str, vocabulary: Vocabulary | None = None, limit: int | None = None) -> list[Variant]:
    """Counterfactual variants of ``text``: each slot changed to each other value of its class.

    A count change also puts the object noun that follows into the matching number ("two cars" ->
    "one car"), and counts are varied nearest first. With a closed ``vocabulary``, values whose
    words it does not know are skipped, and where it lists the values of a class its world has
    (:attr:`Vocabulary.values`), only those are varied: a word naming something else of the class
    ("a pond in a meadow") is left as it is. With ``limit``, at most that many are returned, taken
    from the classes in turn so that every class named keeps some (each variant is a text to
    encode: a large text tower on a CPU costs tens of milliseconds a text).
    """
    every = _all_variants(text, vocabulary)
    if limit is None or len(every) <= limit:
        return every
    by_class: dict[str, list[Variant]] = {}
    for v in every:
        by_class.setdefault(v.cls, []).append(v)
    queues = list(by_class.values())
    chosen: list[Variant] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return [v for v in every if v in chosen]


def _all_variants(text: str, vocabulary: Vocabulary | None) -> list[Variant]:
    words = tokens(text)
    slots = parse(words)
    out: list[Variant] = []
    seen: set[str] = {" ".join(words)}
    allowed = vocabulary.values if vocabulary is not None else {}
    for slot in slots:
        values = list(_OBJECTS) if slot.cls == "object" else list(_PHRASES[slot.cls])
        if slot.cls in allowed:
            if slot.value not in allowed[slot.cls]:
                continue
            values = [v for v in values if v in allowed[slot.cls]]
        named = {s.value for s in slots if s.cls == slot.cls}
        if slot.cls == "count":
            order = list(_COUNTS)
            values.sort(key=lambda v: abs(order.index(v) - order.index(slot.value)))
        for value in values:
            if value in named:
                continue
            new = _form(slot.cls, value, slot.plural)
            changed = [*words[: slot.start], *new, *words[slot.end :]]
            if slot.cls == "count":
                changed = _agree_number(changed, slot.start + len(new), plural=value != "one")
            if vocabulary is not None and not vocabulary.knows(changed):
                continue
            phrase = " ".join(changed)
            if phrase not in seen:
                seen.add(phrase)
                out.append(Variant(slot.cls, value, phrase))
    return out


def _agree_number(words: list[str], after: int, plural: bool) -> list[str]:
    """Put the first object noun at or after position ``after`` (within 3 words) into the number."""
    for i in range(after, min(after + 4, len(words))):
        for n in range(min(_LONGEST, len(words) - i), 0, -1):
            entry = _TABLE.get(tuple(words[i : i + n]))
            if entry is not None and entry.cls == "object":
                if entry.plural == plural:
                    return words
                current = tuple(words[i : i + n])
                forms = next(
                    f for f in _OBJECTS[entry.value] if tuple(tokens(f[int(bool(entry.plural))])) == current
                )
                return [*words[:i], *tokens(forms[int(plural)]), *words[i + n :]]
    return words


class Vocabulary:
    """The words a model with a closed vocabulary was trained on (e.g. the starter model).

    Stored beside the model's weights as ``<weights stem>.vocab.json``: ``{"words": [...]}``, and
    optionally ``"values": {class: [value, ...]}``, the values of each attribute class its world
    has (the scene world has five places, for instance; a lake there is part of a place, not one).
    """

    def __init__(self, words: Iterable[str], values: Mapping[str, Iterable[str]] | None = None):
        self.words = frozenset(words)
        if not self.words:
            raise ValueError("a vocabulary needs at least one word")
        self.values = {cls: frozenset(v) for cls, v in (values or {}).items()}
        unknown = set(self.values) - set(CLASSES)
        if unknown:
            raise ValueError(f"unknown attribute classes {sorted(unknown)}; classes are {CLASSES}")

    def knows(self, words: Iterable[str]) -> bool:
        return all(w in self.words for w in words)

    def unknown(self, text: str) -> list[str]:
        """The words of ``text`` the model does not know, in order, each once."""
        out: list[str] = []
        for w in tokens(text):
            if w not in self.words and w not in out:
                out.append(w)
        return out

    @classmethod
    def load(cls, path: Path) -> Vocabulary | None:
        """The vocabulary in ``path``; None when there is none or it is unreadable (with a warning)."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            words = data["words"]
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise TypeError("'words' must be a list of strings")
            values = data.get("values") or {}
            if not isinstance(values, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v) for v in values.values()
            ):
                raise TypeError("'values' must map classes to lists of strings")
            return cls(words, values)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring the vocabulary file %s: %s", path, exc)
            return None
