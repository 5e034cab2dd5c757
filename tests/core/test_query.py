"""Query parsing and the combination of term vectors."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import QueryError
from core.query import Query, QueryTerm, combine, parse_query


def terms(text: str) -> list[tuple[float, str]]:
    return [(t.weight, t.text) for t in parse_query(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a dog on the beach", [(1.0, "a dog on the beach")]),
        ("  a   dog\ton the beach ", [(1.0, "a dog on the beach")]),
        ("beach -people", [(1.0, "beach"), (-1.0, "people")]),
        ('"beach" - "people"', [(1.0, "beach"), (-1.0, "people")]),
        ('"beach"-"people"', [(1.0, "beach"), (-1.0, "people")]),
        ("beach - people", [(1.0, "beach"), (-1.0, "people")]),
        ("red car - blue sky", [(1.0, "red car"), (-1.0, "blue sky")]),
        ('"sunset" + 0.5 "boat"', [(1.0, "sunset"), (0.5, "boat")]),
        ("sunset + 0.5*boat", [(1.0, "sunset"), (0.5, "boat")]),
        ("sunset + 0.5 * sail boat", [(1.0, "sunset"), (0.5, "sail boat")]),
        ('-0.5 "boat" sunset', [(-0.5, "boat"), (1.0, "sunset")]),
        ('"beach" "sunset"', [(1.0, "beach"), (1.0, "sunset")]),
        ('dog "at night"', [(1.0, "dog"), (1.0, "at night")]),
        ("beach+sunset", [(1.0, "beach"), (1.0, "sunset")]),
        ("\u201ccurly quotes\u201d -rain", [(1.0, "curly quotes"), (-1.0, "rain")]),
    ],
)
def test_syntax(text, expected):
    assert terms(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("black-and-white photo", [(1.0, "black-and-white photo")]),  # a hyphen inside a word
        ("2 dogs", [(1.0, "2 dogs")]),  # a number is text unless it weighs a phrase
        ("3.5mm lens", [(1.0, "3.5mm lens")]),
        ('"unclosed phrase', [(1.0, "unclosed phrase")]),  # typing in progress
        ("beach -", [(1.0, "beach")]),
        ('beach "" +', [(1.0, "beach")]),
    ],
)
def test_plain_text_survives(text, expected):
    assert terms(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "+ -", '""', "0*beach", "-people", '- "people" - rain'])
def test_nothing_to_search_for(text):
    with pytest.raises(QueryError):
        parse_query(text)


def test_only_negative_terms_explain_what_to_do():
    with pytest.raises(QueryError, match="positive term"):
        parse_query("-people")


@pytest.mark.parametrize(
    "text", ["a dog", "beach -people", '"sunset" + 0.5 "boat"', '-0.5 "boat" sunset', "x + 2*y - 0.25*z"]
)
def test_describe_parses_back_to_the_same_terms(text):
    q = Query.parse(text)
    assert parse_query(q.describe()) == list(q.terms)
    assert q.text == text.strip()


def test_describe_and_keys():
    q = Query(terms=(QueryTerm(1.0, "at night"),), photo_id=3, image_weight=0.5)
    assert q.describe() == '"at night" + 0.5*photo:3'
    assert Query.parse("beach  -people").text_key() == Query.parse('"beach" - "people"').text_key()
    assert Query.parse("beach -people").text_key() != Query.parse("beach people").text_key()


def test_combine_is_the_renormalised_weighted_sum_of_unit_vectors():
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 16))
    scaled = v * np.array([[2.0], [0.3], [5.0]])  # lengths do not matter: each is normalised first
    got = combine([1.0, -1.0, 0.5], scaled)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    want = u[0] - u[1] + 0.5 * u[2]
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-6)
    assert got.dtype == np.float32 and np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    # The subtracted concept really scores lower against the combined query.
    assert got @ u[1] < u[0] @ u[1]


def test_combine_with_an_image():
    rng = np.random.default_rng(1)
    text, image = rng.standard_normal((1, 8)), rng.standard_normal(8)
    got = combine([1.0], text, image, image_weight=0.5)
    want = text[0] / np.linalg.norm(text) + 0.5 * image / np.linalg.norm(image)
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-6)
    only_image = combine([], np.empty((0, 8)), image)
    np.testing.assert_allclose(only_image, image / np.linalg.norm(image), atol=1e-6)


def test_terms_that_cancel_out_are_an_error():
    v = np.ones((2, 4))
    with pytest.raises(QueryError, match="cancel"):
        combine([1.0, -1.0], v)
    with pytest.raises(QueryError):
        combine([1.0], np.zeros((1, 4)))
    with pytest.raises(QueryError):
        combine([], np.empty((0, 4)))


def test_a_weight_after_its_phrase_is_an_error_with_the_right_form():
    with pytest.raises(QueryError, match="put the weight before it"):
        Query.parse('"a" * 3')
    assert Query.parse('3*"a"').terms[0].weight == 3.0
    assert Query.parse("beach * 2").terms[0].text == "beach * 2"  # inside a phrase it is text
