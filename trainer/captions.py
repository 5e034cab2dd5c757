"""Captions for scene-world photos, and the reverse: attributes named in a free-text query.

:func:`caption` names all five attributes of a scene in varied phrasing ("two purple kites over
a snowy field at dusk", "sunset over a snowy meadow with a yellow balloon"); :func:`describe`
names any chosen subset and :func:`partial_caption` a random one, returning which attributes it
named, so graded relevance can be trained and measured. :func:`attributes_in_text` parses text
back into attributes (synonyms, numbers as words or digits), which gives any typed query its
ground truth against the scene world.

Parsing rules worth knowing:

* Articles do not count: "a red car" names no count; "one", "a single", "a lone", "1" do.
* A colour word right before a scenery word ("orange sky", "white snow", "blue water") describes
  the scenery, not the objects, and is ignored.
* Snow words outrank generic landscape words, so "a snowy meadow" is a snow setting.
* Otherwise, when an attribute is named twice, the first mention wins.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from itertools import combinations

import numpy as np

from core.lexicon import phrases, tokens
from trainer.scenes import ATTRIBUTES, VOCABULARY, Scene, sample_scenes

logger = logging.getLogger(__name__)

__all__ = ["attributes_in_text", "caption", "describe", "partial_caption"]

RngLike = np.random.Generator | int | None

# ---------------------------------------------------------------------------------------------
# Phrasing used to write captions. Every phrase here must parse back to what it names (the
# tests check that), and must name nothing else.

_KIND_NOUNS: dict[str, list[tuple[str, str]]] = {
    "car": [("car", "cars"), ("car", "cars"), ("automobile", "automobiles")],
    "house": [("house", "houses"), ("house", "houses"), ("cottage", "cottages")],
    "tree": [("tree", "trees")],
    "boat": [("boat", "boats"), ("sailboat", "sailboats"), ("sailing boat", "sailing boats")],
    "balloon": [
        ("hot-air balloon", "hot-air balloons"),
        ("balloon", "balloons"),
        ("hot air balloon", "hot air balloons"),
    ],
    "kite": [("kite", "kites")],
}
_GENERIC_NOUNS = [("object", "objects"), ("thing", "things")]
_COUNT_WORDS = {
    "one": ["one", "a single", "a lone", "just one", "1"],
    "two": ["two", "two", "a pair of", "a couple of", "2"],
    "three": ["three", "three", "a trio of", "3"],
}
_SETTING_PHRASES: dict[str, dict[str, list[str]]] = {
    "ground": {
        "beach": ["on the beach", "on a sandy beach", "by the sea", "at the seaside", "on the shore"],
        "snow": [
            "in the snow",
            "on a snowy field",
            "in a snowy landscape",
            "on snow-covered ground",
            "in a winter landscape",
        ],
        "meadow": [
            "in a meadow",
            "on a grassy field",
            "in the grass",
            "in the countryside",
            "on a grassy hill",
        ],
        "city": ["in the city", "on a city street", "in town", "downtown", "on an urban street"],
        "desert": ["in the desert", "among sand dunes", "in the dunes", "on desert sand"],
    },
    "sky": {
        "beach": ["over the beach", "above the sea", "over the seaside", "above a sandy beach"],
        "snow": [
            "over a snowy field",
            "above the snow",
            "over snowy mountains",
            "above a snow-covered valley",
        ],
        "meadow": ["over a meadow", "above the grass", "over a grassy field", "over the countryside"],
        "city": ["over the city", "above the town", "over the city skyline", "above downtown"],
        "desert": ["over the desert", "above the dunes", "over desert dunes"],
    },
    "water": {
        "beach": ["off the beach", "on the sea", "by the shore", "on the sea by a sandy beach"],
        "snow": ["on a lake in the snow", "on an icy lake", "on a lake in a snowy landscape"],
        "meadow": ["on a pond in a meadow", "on a lake in the countryside", "on a pond by a grassy field"],
        "city": ["on a canal in the city", "in a city harbour", "on a canal downtown"],
        "desert": ["on an oasis in the desert", "on a desert lake", "in a desert oasis"],
    },
}
_SETTING_NOUNS = {
    "beach": ["the beach", "a sandy beach", "the seaside", "the shore"],
    "snow": ["a snowy field", "a snowy meadow", "a snow-covered landscape", "snowy mountains"],
    "meadow": ["a meadow", "a grassy field", "the countryside", "a grassy meadow"],
    "city": ["the city", "a city street", "the town", "the city skyline"],
    "desert": ["the desert", "desert dunes", "sand dunes"],
}
_TIME_PHRASES = {
    "day": ["during the day", "in daylight", "on a sunny day", "at midday", "in the afternoon", "by day"],
    "sunset": [
        "at sunset",
        "at dusk",
        "in the evening",
        "at sundown",
        "in the evening light",
        "at golden hour",
    ],
    "night": ["at night", "at nighttime", "under the stars", "by moonlight", "after dark", "at midnight"],
}
_TIME_NOUNS = {
    "day": ["a sunny day", "daytime", "midday", "a bright day"],
    "sunset": ["sunset", "dusk", "evening", "sundown"],
    "night": ["night", "nighttime", "a starry night", "midnight"],
}
_TIME_ADJECTIVES = {
    "day": ["a daytime", "a sunny"],
    "sunset": ["a sunset", "an evening", "a dusk"],
    "night": ["a night-time", "a night", "a moonlit"],
}
_PHOTO_NOUNS = ["photo", "picture", "shot", "snapshot"]

# ---------------------------------------------------------------------------------------------
# Parsing tables: phrase (as a tuple of tokens) -> (attribute, value, strength).

_STRONG, _WEAK = 2, 1


def _build_lexicon() -> dict[tuple[str, ...], tuple[str, str, int]]:
    lex: dict[tuple[str, ...], tuple[str, str, int]] = {}

    def add(attr: str, value: str, words: str, strength: int = _STRONG) -> None:
        for w in words.split(","):
            lex[tuple(w.split())] = (attr, value, strength)

    add("kind", "car", "car,cars,automobile,automobiles,sedan,sedans")
    add("kind", "house", "house,houses,cottage,cottages")
    add("kind", "tree", "tree,trees")
    add("kind", "boat", "boat,boats,sailboat,sailboats,yacht,yachts,sailing boat,sailing boats")
    add("kind", "balloon", "balloon,balloons")
    add("kind", "kite", "kite,kites")
    add("colour", "red", "red,crimson,scarlet")
    add("colour", "orange", "orange")
    add("colour", "yellow", "yellow")
    add("colour", "green", "green")
    add("colour", "blue", "blue,navy")
    add("colour", "purple", "purple,violet,lilac")
    add("colour", "white", "white")
    add("colour", "black", "black")
    add("count", "one", "one,1,single,lone,solitary")
    add("count", "two", "two,2,pair,couple")
    add("count", "three", "three,3,trio")
    add("setting", "beach", "beach,beaches,sea,seaside,shore,coast,ocean")
    add("setting", "snow", "snow,snowy,snowfield,icy,winter,wintry,snow covered")
    add("setting", "meadow", "meadow,meadows,grass,grassy,countryside,pasture,field,fields,lawn", _WEAK)
    add("setting", "city", "city,town,downtown,urban,street,streets,skyline")
    add("setting", "desert", "desert,deserts,dune,dunes,oasis,sahara")
    add("time", "day", "day,daytime,daylight,sunny,midday,noon,afternoon,morning")
    add("time", "sunset", "sunset,dusk,evening,sundown,sunrise,dawn,twilight,golden hour")
    add("time", "night", "night,nighttime,night time,moonlight,moonlit,stars,starry,midnight,after dark")
    return lex


_LEXICON = _build_lexicon()
_MAX_PHRASE = max(len(k) for k in _LEXICON)
# a colour right before one of these words describes the scenery, not the objects
_SCENERY_WORDS = frozenset(
    {
        *("sky", "skies", "snow", "sand", "sands", "grass", "field", "fields", "meadow", "meadows"),
        *("sea", "ocean", "water", "waves", "sunset", "sunrise", "dusk", "night", "light", "lights"),
        *("glow", "dunes", "dune", "desert", "beach", "city", "street", "streets", "hills", "moon"),
        *("sun", "clouds", "background", "horizon", "hour", "mountains"),
    }
)


def attributes_in_text(text: str) -> dict[str, str]:
    """Attributes a free-text query names, as ``{attribute: vocabulary value}``.

    Handles synonyms ("dusk", "town", "snow-covered", "sailboat"), counts as words or digits
    ("two", "2", "a pair of"), and ignores words it does not know. Returns an empty dict when
    the text names nothing from the scene world.
    """
    words = tokens(text)
    found: dict[str, tuple[int, int, str]] = {}  # attr -> (-strength, position, value)
    for start, end, (attr, value, strength) in phrases(words, _LEXICON, _MAX_PHRASE):
        following = words[end] if end < len(words) else ""
        if not (attr == "colour" and following in _SCENERY_WORDS):
            key = (-strength, start, value)
            if attr not in found or key < found[attr]:
                found[attr] = key
    return {a: found[a][2] for a in ATTRIBUTES if a in found}


# ---------------------------------------------------------------------------------------------
# Writing


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeio" else "a"


def _group(kind: str) -> str:
    return "sky" if kind in ("balloon", "kite") else ("water" if kind == "boat" else "ground")


def _noun_phrase(scene: Scene, named: Collection[str], rng: np.random.Generator) -> str | None:
    has_kind, has_colour, has_count = ("kind" in named), ("colour" in named), ("count" in named)
    if not (has_kind or has_colour or has_count):
        return None
    plural = scene.n_objects > 1
    if has_colour and not has_kind and not has_count and not plural and rng.uniform() < 0.4:
        return f"something {scene.colour}"
    nouns = _KIND_NOUNS[scene.kind] if has_kind else _GENERIC_NOUNS
    noun = nouns[int(rng.integers(len(nouns)))][1 if plural else 0]
    words = [scene.colour, noun] if has_colour else [noun]
    if has_count:
        det = _pick(rng, _COUNT_WORDS[scene.count])
    elif plural:
        det = _pick(rng, ["", "", "some"])
    else:
        det = _article(words[0])
    return " ".join(w for w in [det, *words] if w)


def describe(scene: Scene, named: Collection[str], rng: RngLike = None) -> str:
    """A caption naming exactly the attributes in ``named`` (at least one), in varied phrasing."""
    named = set(named)
    unknown = named - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attributes {sorted(unknown)}; attributes are {ATTRIBUTES}")
    if not named:
        raise ValueError("a caption must name at least one attribute")
    rng = _rng(rng)
    np_ = _noun_phrase(scene, named, rng)
    group = _group(scene.kind)
    setting_pp = _pick(rng, _SETTING_PHRASES[group][scene.setting]) if "setting" in named else None
    time_pp = _pick(rng, _TIME_PHRASES[scene.time]) if "time" in named else None
    if np_ is None:
        return _scenery_caption(scene, setting_pp, time_pp, rng)
    return _object_caption(scene, np_, setting_pp, time_pp, rng)


def _scenery_caption(
    scene: Scene, setting_pp: str | None, time_pp: str | None, rng: np.random.Generator
) -> str:
    """A caption of the setting and/or the time alone (no object named)."""
    if setting_pp is None:
        assert time_pp is not None
        return _pick(
            rng, [f"a photo taken {time_pp}", f"a scene {time_pp}", _pick(rng, _TIME_NOUNS[scene.time])]
        )
    setting_np = _pick(rng, _SETTING_NOUNS[scene.setting])
    if time_pp is None:
        return _pick(rng, [setting_np, f"a photo of {setting_np}", f"a view of {setting_np}"])
    time_noun = _pick(rng, _TIME_NOUNS[scene.time])
    return _pick(
        rng,
        [
            f"{setting_np} {time_pp}",
            f"{time_noun} over {setting_np}",
            f"a view of {setting_np} {time_pp}",
        ],
    )


def _object_caption(
    scene: Scene, np_: str, setting_pp: str | None, time_pp: str | None, rng: np.random.Generator
) -> str:
    """A caption around the noun phrase ``np_``, in one of six sentence shapes."""
    style = int(rng.integers(6))
    if style == 0 and setting_pp and time_pp:  # "sunset over a snowy meadow with a yellow balloon"
        time_noun = _pick(rng, _TIME_NOUNS[scene.time])
        setting_np = _pick(rng, _SETTING_NOUNS[scene.setting])
        return f"{time_noun} over {setting_np} with {np_}"
    if style == 1 and time_pp:  # "at dusk, two purple kites over a snowy field"
        return ", ".join([time_pp, " ".join(p for p in [np_, setting_pp] if p)])
    if style == 2 and time_pp:  # "a night-time photo of a red car in the city"
        adj = _pick(rng, _TIME_ADJECTIVES[scene.time])
        return " ".join(p for p in [f"{adj} {_pick(rng, _PHOTO_NOUNS)} of {np_}", setting_pp] if p)
    parts = [np_, setting_pp, time_pp]
    if style == 3:
        parts = [np_, time_pp, setting_pp]
    text = " ".join(p for p in parts if p)
    if style == 4:
        text = f"a {_pick(rng, _PHOTO_NOUNS)} of {text}"
    return text


def caption(scene: Scene, rng: RngLike = None) -> str:
    """A caption naming all five attributes of ``scene``, e.g. "three boats on the sea at sunset"."""
    return describe(scene, ATTRIBUTES, rng)


def partial_caption(
    scene: Scene, rng: RngLike = None, named: Collection[str] | None = None
) -> tuple[str, dict[str, str]]:
    """A caption naming only some attributes, and the attributes it names.

    Without ``named``, a random proper subset of one to four attributes is named.
    """
    rng = _rng(rng)
    if named is None:
        k = int(rng.integers(1, len(ATTRIBUTES)))
        named = [ATTRIBUTES[i] for i in sorted(rng.choice(len(ATTRIBUTES), size=k, replace=False))]
    attrs = scene.attributes()
    return describe(scene, named, rng), {a: attrs[a] for a in ATTRIBUTES if a in set(named)}


def caption_vocabulary(samples: int = 4000, seed: int = 0) -> list[str]:
    """Every word the captions use (as :func:`core.lexicon.tokens` splits them), sorted.

    A model trained on these captions knows these words and no others: its vocabulary file (beside
    its weights) lets search say which words of a query the model does not know. Captions of
    ``samples`` scenes naming every subset of their attributes are drawn, which reaches every
    phrase of the tables above many times over (the tests check that more samples add nothing).
    """
    rng = np.random.default_rng([0xC0CAB, seed])
    subsets = [c for k in range(1, len(ATTRIBUTES) + 1) for c in combinations(ATTRIBUTES, k)]
    words: set[str] = set()
    for scene in sample_scenes(samples, seed) + sample_scenes(samples // 4, seed, split="heldout"):
        for named in subsets:
            words.update(tokens(describe(scene, named, rng)))
    return sorted(words)


def class_values() -> dict[str, list[str]]:
    """The scene world's values of each attribute class of :mod:`core.lexicon` (its names differ:
    the scene world's kind is the lexicon's object, its setting the lexicon's place)."""
    names = {"count": "count", "colour": "colour", "kind": "object", "setting": "place", "time": "time"}
    return {names[a]: list(VOCABULARY[a]) for a in ATTRIBUTES}
