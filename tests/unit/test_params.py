import pytest

from xraybench.errors import ParamError
from xraybench.params import parse_assignments, resolve

DEFAULTS = {"epochs": 20, "learning_rate": 1e-3, "augment": True, "name": "x", "weights": ""}


def test_types_follow_defaults():
    p = resolve(DEFAULTS, parse_assignments(["epochs=3", "learning_rate=0.01", "augment=false", "name=y"]))
    assert p == {"epochs": 3, "learning_rate": 0.01, "augment": False, "name": "y", "weights": ""}


def test_unknown_key_lists_known():
    with pytest.raises(ParamError, match="unknown parameter 'lr' for m; known: augment, epochs"):
        resolve(DEFAULTS, {"lr": "1"}, "m")


@pytest.mark.parametrize("item", ["epochs=three", "augment=maybe", "learning_rate=fast"])
def test_wrong_type(item):
    with pytest.raises(ParamError, match="expected"):
        resolve(DEFAULTS, parse_assignments([item]))


def test_epochs_zero_and_malformed():
    with pytest.raises(ParamError, match="epochs must be a positive integer"):
        resolve(DEFAULTS, {"epochs": "0"})
    with pytest.raises(ParamError, match="is not key=value"):
        parse_assignments(["epochs"])
