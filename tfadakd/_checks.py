"""Argument checks shared by the public constructors, so that every numeric argument is refused alike.

One rule for every hyper-parameter given as a number (temperatures, loss weights, epochs): a Python or
NumPy real number (`4`, `4.0`, `np.float32(4)`, `np.int64(4)`) is accepted; a string (`"4"`), a bool,
a complex number, an array or `None` is not, nor NaN or +-Inf; the message names the argument, the value
received and what is expected.

Example:

>>> check_number("temperature", np.float32(4), minimum=0, exclusive_minimum=True, owner="Static")
4.0
>>> check_number("temperature", "4", minimum=0, exclusive_minimum=True, owner="Static")
Traceback (most recent call last):
ValueError: Static `temperature` must be a finite number > 0, got '4' (a str).
"""

from __future__ import annotations

import math
import numbers


def _expected(minimum, exclusive_minimum, maximum, exclusive_maximum, integer):
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
    if maximum is not None:
        bounds.append(f"{'<' if exclusive_maximum else '<='} {maximum:g}")
    kind = "an integer" if integer else "a finite number"
    return kind + (" " + " and ".join(bounds) if bounds else "")


def check_number(
    name,
    value,
    *,
    minimum=None,
    exclusive_minimum=False,
    maximum=None,
    exclusive_maximum=False,
    integer=False,
    owner=None,
    hint=None,
):
    """Checks a numeric argument and returns it as a Python `float` (an `int` with `integer=True`).

    Arguments:
        name: the argument's name, as the caller spells it (`"temperature"`).
        value: the value received.
        minimum, maximum: optional bounds; `exclusive_minimum` / `exclusive_maximum` make them strict.
        integer: require a whole number (`10`, `np.int64(10)` or `10.0`) and return an `int`.
        owner: who takes the argument (a class name), put in front of the message.
        hint: a sentence appended to the message (typical values, for instance).

    Returns:
        `float(value)`, or `int(value)` with `integer=True`.

    Raises:
        ValueError: for a value that is not a real number (a string, a bool, `None`, an array, a complex
            number), that is NaN or infinite, not whole where `integer` is asked, or out of bounds. The
            message reads "<owner> `<name>` must be <what is expected>, got <value> (a <type>)."
    """
    expected = _expected(minimum, exclusive_minimum, maximum, exclusive_maximum, integer)

    def refuse():
        prefix = f"{owner} " if owner else ""
        message = f"{prefix}`{name}` must be {expected}, got {value!r} (a {type(value).__name__})."
        raise ValueError(message + (f" {hint}" if hint else ""))

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        refuse()  # numbers.Real covers int, float and NumPy's integer and floating scalars
    if isinstance(value, numbers.Integral):
        number = int(value)
        if not integer:
            try:
                float(number)
            except OverflowError:  # too large for a float
                refuse()
    else:
        number = float(value)
        if not math.isfinite(number):
            refuse()
        if integer:
            if not number.is_integer():
                refuse()
            number = int(number)
    if minimum is not None and (number <= minimum if exclusive_minimum else number < minimum):
        refuse()
    if maximum is not None and (number >= maximum if exclusive_maximum else number > maximum):
        refuse()
    return int(number) if integer else float(number)
