import argparse

import pytest

from core.arguments import duration, finite_number, positive_int
from core.progress import drive


@pytest.mark.parametrize(("text", "value"), [("1", 1), ("42", 42), (" 7 ", 7)])
def test_positive_int_accepts_whole_numbers_from_one(text, value):
    assert positive_int(text) == value


@pytest.mark.parametrize(
    ("text", "message"), [("0", ">= 1"), ("-3", ">= 1"), ("2.5", "whole"), ("ten", "whole")]
)
def test_positive_int_refuses_with_what_it_expected(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        positive_int(text)


def test_finite_number():
    assert finite_number("1e-3") == pytest.approx(0.001)
    assert finite_number("-2") == -2.0
    for bad in ("nan", "inf", "-inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            finite_number(bad)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("25m", 1500), ("1.5h", 5400), ("2", 120), (" 3M ", 180)]
)
def test_duration_units(text, seconds):
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0", "0m", "ten minutes", "5d", ""])
def test_duration_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_argparse_reports_the_message():
    parser = argparse.ArgumentParser(prog="x", exit_on_error=False)
    parser.add_argument("-k", type=positive_int)
    with pytest.raises(argparse.ArgumentError, match="expected a number >= 1, got 0"):
        parser.parse_args(["-k", "0"])


def test_drive_forwards_every_record_and_returns_the_result():
    def run():
        yield 1
        yield 2
        return "done"

    seen: list[int] = []
    assert drive(run(), seen.append) == "done"
    assert seen == [1, 2]
    assert drive(run()) == "done"
