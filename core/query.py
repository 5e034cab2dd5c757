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

import datetime
import logging
import math
import os
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
    return _checked_terms(_QueryParser(text).terms())


class _QueryParser:
    """One left-to-right pass over a query's text; each step reads one token at ``pos``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.found: list[QueryTerm] = []
        self.sign, self.weight = 1.0, 1.0  # of the term being read
        self.words: list[str] = []  # of the term being read, when it is not quoted

    def terms(self) -> list[QueryTerm]:
        """Every term of the text, in order, weights included (zero weights too)."""
        while self.pos < self.n:
            ch = self.text[self.pos]
            if ch.isspace():
                self.pos += 1
            elif ch in _QUOTES:
                self._quoted(ch)
            elif self._is_operator(ch):
                self._operator(ch)
            elif self.words or not self._weight():  # a weight only at the start of a term
                self._word()
        self._flush()
        return self.found

    def _add(self, phrase: str) -> None:
        """End the current term with ``phrase`` (none when it is empty)."""
        if phrase:
            self.found.append(QueryTerm(self.sign * self.weight, phrase))
        self.sign, self.weight = 1.0, 1.0

    def _flush(self) -> None:
        """End the current term with the words read so far."""
        phrase = _clean(" ".join(self.words))
        self.words.clear()
        self._add(phrase)

    def _quoted(self, quote: str) -> None:
        if self.words:  # words before a quote are their own term; the quote starts a new one
            self._flush()
        end = self.text.find(_QUOTES[quote], self.pos + 1)
        if end < 0:
            end = self.n
        self._add(_clean(self.text[self.pos + 1 : end]))
        self.pos = end + 1

    def _is_operator(self, ch: str) -> bool:
        """'+' anywhere; '-' only at the start of a word."""
        before = self.text[self.pos - 1] if self.pos else " "
        return ch == "+" or (ch == "-" and (before.isspace() or before in _CLOSING))

    def _operator(self, ch: str) -> None:
        self._flush()
        self.sign = -1.0 if ch == "-" else 1.0
        self.pos += 1

    def _weight(self) -> bool:
        """Read a weight: a number followed by '*' or by a quoted phrase; False if there is none."""
        m = _WEIGHT_STAR.match(self.text, self.pos)
        if m:
            self.weight = float(m.group(1))
            self.pos = m.end()
            return True
        m = _NUMBER.match(self.text, self.pos)
        if m is None:
            return False
        end = m.end()
        at_boundary = end == self.n or self.text[end].isspace() or self.text[end] in _QUOTES
        if not (at_boundary and self.text[end:].lstrip()[:1] in _QUOTES):
            return False
        self.weight = float(m.group(0))
        self.pos = end
        return True

    def _word(self) -> None:
        """A word: up to the next space, quote or '+'."""
        end = self.pos
        while (
            end < self.n
            and not self.text[end].isspace()
            and self.text[end] not in _QUOTES
            and self.text[end] != "+"
        ):
            end += 1
        self.words.append(self.text[self.pos : end])
        self.pos = end


def _checked_terms(terms: list[QueryTerm]) -> list[QueryTerm]:
    """The terms with a weight, once they are something to search for."""
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


# The weight of an example photo in "not like this": it pushes results away from the photo half as
# strongly as the text pulls them (at -1 the push outweighs a short text's pull and random photos
# come first).
NOT_LIKE_WEIGHT = -0.5


@dataclass(frozen=True)
class PhotoFilter:
    """Which photos a search may return: those in ``folders`` (library folders; empty: all), taken
    from ``taken_from`` to ``taken_to`` (ISO dates ``YYYY-MM-DD``, inclusive; None: open).

    A photo without an EXIF date counts by its file's modification date.

    Raises:
        QueryError: a date that is not ``YYYY-MM-DD``, or a range that ends before it starts.
    """

    folders: tuple[str, ...] = ()
    taken_from: str | None = None
    taken_to: str | None = None

    def __post_init__(self) -> None:
        for name in ("taken_from", "taken_to"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                day = datetime.date.fromisoformat(str(value).strip())
            except ValueError:
                raise QueryError(
                    f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2024-07-31."
                ) from None
            object.__setattr__(self, name, day.isoformat())
        if self.taken_from and self.taken_to and self.taken_from > self.taken_to:
            raise QueryError(f"The date range ends ({self.taken_to}) before it starts ({self.taken_from}).")
        object.__setattr__(self, "folders", tuple(str(f) for f in self.folders))

    @property
    def is_empty(self) -> bool:
        return not self.folders and self.taken_from is None and self.taken_to is None

    def describe(self) -> str:
        """E.g. "in trips, taken 2024-07-01 to 2024-07-31" ("" when it filters nothing)."""
        parts = []
        if self.folders:
            parts.append("in " + ", ".join(os.path.basename(f.rstrip("/\\")) or f for f in self.folders))
        if self.taken_from and self.taken_to:
            parts.append(f"taken {self.taken_from} to {self.taken_to}")
        elif self.taken_from:
            parts.append(f"taken from {self.taken_from}")
        elif self.taken_to:
            parts.append(f"taken up to {self.taken_to}")
        return ", ".join(parts)
