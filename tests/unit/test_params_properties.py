"""Property-based tests of the `--param key=value` parser: any text gives a typed value or a
one-line ParamError, never another exception; valid values round-trip through their text."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xraybench.errors import ParamError
from xraybench.params import coerce, parse_assignments, resolve

SETTINGS = settings(max_examples=100, deadline=None)

defaults = st.one_of(
    st.booleans(),
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# Text a user might type, and text nobody would: numbers, words, JSON, junk, unicode, '=' signs.
values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["true", "False", "yes", "off", "1", "0", "-3", "1e-3", "nan", "inf", "-inf", "1_000", "0x10",
                     "[1, 2]", "{\"a\": 1}", "null", "[" * 2000, "1" * 5000, " 7 ", "", "=", "a=b"]),
    st.integers().map(str),
    st.floats().map(repr),
)


def _type_ok(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, float) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        return isinstance(value, list)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True  # a None default takes JSON or text


@SETTINGS
@given(default=defaults, text=values)
def test_any_text_gives_a_typed_value_or_a_param_error(default, text):
    try:
        params = resolve({"p": default}, parse_assignments([f"p={text}"]), "m")
    except ParamError as exc:
        assert "\n" not in str(exc) and "--param p=" in str(exc)
        return
    assert _type_ok(params["p"], default), (default, text, params["p"])


@SETTINGS
@given(item=st.text(max_size=40))
def test_assignment_parser_takes_anything(item):
    try:
        parsed = parse_assignments([item])
    except ParamError as exc:
        assert "\n" not in str(exc) and "is not key=value" in str(exc)
        assert "=" not in item or not item.partition("=")[0].strip()
        return
    ((key, value),) = parsed.items()
    assert key == item.partition("=")[0].strip() and key and value == item.partition("=")[2].strip()


def _text_of(value) -> str:
    """How a user would write ``value`` on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


typed_pairs = st.one_of(
    st.tuples(st.booleans(), st.booleans()),
    st.tuples(st.integers(), st.integers(-10**30, 10**30)),
    st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.text(max_size=5), st.text(max_size=20).map(str.strip)),
    st.tuples(st.lists(st.integers(), max_size=2), st.lists(st.integers(-99, 99), max_size=4)),
    st.tuples(st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
              st.dictionaries(st.text(max_size=4), st.integers(), max_size=3)),
)


@SETTINGS
@given(pair=typed_pairs, key=st.text(min_size=1, max_size=10).map(str.strip).filter(lambda k: k and "=" not in k))
def test_valid_values_round_trip(pair, key):
    default, value = pair
    params = resolve({key: default}, parse_assignments([f"{key}={_text_of(value)}"]))
    assert params[key] == value and type(params[key]) is type(value)


@pytest.mark.parametrize("default, text", [(0.1, "nan"), (0.1, "inf"), ([32, 64], "32,64"), ([1], "5"),
                                           ({"a": 1}, "[1]"), (3, "[" * 5000), (None, "[" * 5000)])
def test_rejected_or_kept_examples(default, text):
    if default is None:
        assert coerce("p", text, default) == text  # not JSON (too deep): kept as the text
        return
    with pytest.raises(ParamError, match="expected"):
        coerce("p", text, default)
