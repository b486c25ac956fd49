"""The shared number formats (cmasim.fmt)."""
import math

from cmasim.fmt import num, with_ci


def test_num_counts_values_and_infinities():
    assert num(1024) == "1,024" and num(True) == "True" and num(None) == "None"
    assert num(12345.0) == "12,345"  # not '1.234e+04', which the sweep summary printed before
    assert num(0.012345) == "0.01235" and num(3.5) == "3.5"
    assert num(math.inf) == "+∞" and num(-math.inf) == "−∞"


def test_with_ci_decimals_follow_the_half_width():
    assert with_ci(None) == "—"
    assert with_ci(12.3456, 0.05) == "12.346" and with_ci(12.3456, 3.0) == "12.3" and with_ci(123.456, 30.0) == "123"
    assert with_ci(1234.0) == "1,234" and with_ci(0.01234) == "0.0123"
