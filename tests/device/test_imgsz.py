"""The one --imgsz parser (edgedet.device.imgsz): accepted spellings, and one-line errors naming the value."""
import numpy as np
import pytest

from edgedet.device.errors import EdgedetError
from edgedet.device.imgsz import parse_imgsz


@pytest.mark.parametrize("given, expected", [
    (None, None), (320, (320, 320)), ("320", (320, 320)), ("320,256", (320, 256)), ("320x256", (320, 256)),
    (" 320 , 256 ", (320, 256)), ((320, 256), (320, 256)), ([64], (64, 64)), (np.int64(96), (96, 96)),
])
def test_accepted_spellings(given, expected):
    assert parse_imgsz(given) == expected


@pytest.mark.parametrize("given, kwargs, problem", [
    ("abc", {}, "expected one or two integers"),
    ("1,2,3", {}, "expected one or two integers"),
    ("", {}, "expected one or two integers"),
    ("0", {}, "at least 1"),
    ("-32,32", {}, "at least 1"),
    ("100", {"stride": 32}, "a multiple of 32"),
    ("320,100", {"stride": 32}, "a multiple of 32"),
    ("32", {"stride": 32, "minimum": 64}, "at least 64"),
])
def test_bad_values_name_the_value_and_the_problem(given, kwargs, problem):
    with pytest.raises(EdgedetError) as error:
        parse_imgsz(given, **kwargs)
    message = str(error.value)
    assert message.startswith(f"--imgsz {given!r}: ") and problem in message and "\n" not in message
