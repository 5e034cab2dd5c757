"""Search queries: free text, weighted +/- combinations of phrases, and an optional example image.

Syntax of the text (plain text needs none of it)::

    a dog on the beach              one term
    beach -people                   "beach" minus "people"
    "red car" - "parking lot"       quoted phrases, explicit operators
    "sunset" + 0.5 "boat"           a weight before a quoted phrase
    sunset + 0.5*boat               or joined to a word by '*'

Words between operators form one phrase. ``+`` always separates terms; ``-`` only at the start
of a word, so "black-and-white photo" stays one phrase. A bare number is text ("2 dogs"): it is
a weight only before a quoted phrase or a ``*``. Unclosed quotes run to the end of the text, so
a query typed character by character always parses.

A query's vector is the sum of ``weight * unit(text vector)`` over its terms (plus
``image_weight * unit(image vector)`` for an example image), normalised again.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.errors import QueryError

logger = logging.getLogger(__name__)

_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c", "\u00ab": "\u00bb"}
_CLOSING = frozenset(_QUOTES.values())
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_WEIGHT_STAR = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+))\s*\*\s*")
_SPACES = re.compile(r"\s+")
_EPS = 1e-6


@dataclass(frozen=True)
class QueryTerm:
    """One phrase of a query and its weight (negative: "less like this")."""

    weight: float
    text: str

    def __str__(self) -> str:
        return Query(terms=(self,)).describe()


@dataclass(frozen=True)
class Query:
    """What to search for: weighted text terms, optionally an example image or photo.

    Attributes:
        terms: The text terms (may be empty when an image or photo is given).
        image_path: An example image file ("more like this picture").
        photo_id: An example photo of the library ("more like this photo"); it is left out of
            the results.
        image_weight: The weight of the example image or photo in the combination.
        text: The text as typed, for display.
    """

    terms: tuple[QueryTerm, ...] = ()
    image_path: str | None = None
    photo_id: int | None = None
    image_weight: float = 1.0
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> Query:
        """A text query; raises :class:`~core.errors.QueryError` when it holds nothing to search for."""
        return cls(terms=tuple(parse_query(text)), text=text.strip())

    @property
    def has_example(self) -> bool:
        return self.image_path is not None or self.photo_id is not None

    def text_key(self) -> tuple[tuple[float, str], ...]:
        """The normalised text part: equal for queries that must give the same text vector."""
        return tuple((round(t.weight, 6), t.text) for t in self.terms)

    def describe(self) -> str:
        """A canonical, human-readable form that parses back to the same terms."""
        parts: list[tuple[float, str]] = [(t.weight, f'"{t.text}"') for t in self.terms]
        if len(parts) == 1 and parts[0][0] == 1.0 and not self.has_example:
            return self.terms[0].text
        if self.photo_id is not None:
            parts.append((self.image_weight, f"photo:{self.photo_id}"))
        if self.image_path is not None:
            parts.append((self.image_weight, f"image:{self.image_path}"))
        out = []
        for i, (w, what) in enumerate(parts):
            mag = "" if abs(w) == 1.0 else f"{abs(w):g}*"
            sign = ("-" if w < 0 else "") if i == 0 else (" - " if w < 0 else " + ")
            out.append(f"{sign}{mag}{what}")
        return "".join(out)

    def __str__(self) -> str:
        return self.describe()


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def parse_query(text: str) -> list[QueryTerm]:
    """Split query text into weighted terms (see the module docstring for the syntax).

    Raises:
        QueryError: nothing to search for (empty, only operators, or only negative terms).
    """
    if not isinstance(text, str):
        raise QueryError("A query must be text.")
    terms: list[QueryTerm] = []
    sign, weight = 1.0, 1.0
    words: list[str] = []
    pos, n = 0, len(text)

    def flush() -> None:
        nonlocal sign, weight
        phrase = _clean(" ".join(words))
        words.clear()
        if phrase:
            terms.append(QueryTerm(sign * weight, phrase))
        sign, weight = 1.0, 1.0

    while pos < n:
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        if ch in _QUOTES:
            if words:  # words before a quote are their own term; the quote starts a new one
                flush()
            end = text.find(_QUOTES[ch], pos + 1)
            if end < 0:
                end = n
            phrase = _clean(text[pos + 1 : end])
            if phrase:
                terms.append(QueryTerm(sign * weight, phrase))
            sign, weight = 1.0, 1.0
            pos = end + 1
            continue
        starts_word = pos == 0 or text[pos - 1].isspace() or text[pos - 1] in _CLOSING
        if ch == "+" or (ch == "-" and starts_word):
            flush()
            sign = -1.0 if ch == "-" else 1.0
            pos += 1
            continue
        # A weight: a number followed by '*' or by a quoted phrase, at the start of a term.
        if not words:
            m = _WEIGHT_STAR.match(text, pos)
            if m:
                weight = float(m.group(1))
                pos = m.end()
                continue
            m = _NUMBER.match(text, pos)
            if m:
                rest = text[m.end() :].lstrip()
                at_boundary = m.end() == n or text[m.end()].isspace() or text[m.end()] in _QUOTES
                if at_boundary and rest[:1] in _QUOTES:
                    weight = float(m.group(0))
                    pos = m.end()
                    continue
        # A word: up to the next space, quote or '+'.
        end = pos
        while end < n and not text[end].isspace() and text[end] not in _QUOTES and text[end] != "+":
            end += 1
        words.append(text[pos:end])
        pos = end
    flush()

    for t in terms:
        if t.text.startswith("*"):
            raise QueryError(
                f"'{t.text}' reads as a weight after its phrase; put the weight before it, "
                "e.g. '3*\"red car\"' or '3 \"red car\"'."
            )
    terms = [t for t in terms if abs(t.weight) > _EPS]
    if not terms:
        raise QueryError("Type something to search for.")
    if all(t.weight < 0 for t in terms):
        raise QueryError(
            "A query needs something to look for, not only what to leave out: "
            f"add a positive term, e.g. 'beach -{terms[0].text}'."
        )
    return terms


def combine(
    weights: Sequence[float],
    vectors: np.ndarray,
    image_vector: np.ndarray | None = None,
    image_weight: float = 1.0,
) -> np.ndarray:
    """The query vector: ``sum w_i * unit(v_i) (+ image_weight * unit(image))``, re-normalised.

    Args:
        weights: One weight per row of ``vectors``.
        vectors: ``(T, D)`` text vectors (normalised again here, so any length works).
        image_vector: Optional ``(D,)`` example-image vector.
        image_weight: Its weight.

    Raises:
        QueryError: the terms cancel out (e.g. ``"beach" - "beach"``).
    """
    vecs = np.asarray(vectors, dtype=np.float64)
    vecs = vecs.reshape(len(weights), -1) if vecs.size else np.empty((len(weights), 0))
    parts = [_unit(v) * w for w, v in zip(weights, vecs, strict=True)]
    if image_vector is not None:
        parts.append(_unit(np.asarray(image_vector, dtype=np.float64).ravel()) * image_weight)
    if not parts:
        raise QueryError("Type something to search for.")
    total = np.sum(parts, axis=0)
    norm = float(np.linalg.norm(total))
    if not math.isfinite(norm) or norm < _EPS:
        raise QueryError("The parts of this query cancel each other out: nothing is left to search for.")
    return (total / norm).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not math.isfinite(norm) or norm < _EPS:
        raise QueryError("The model returned an empty vector for part of this query.")
    return v / norm
