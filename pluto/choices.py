"""Choices: Enums of string options that reject unknown values with the valid ones.

``parse_choice`` is the one way the project turns a string from a flag, a config key or a file
into an Enum member (alime's ``str`` Enums included); ``Choice`` is a base whose ``parse`` uses it.
"""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


def parse_choice(cls: type[E], value: object, what: str | None = None) -> E:
    """Return the member of ``cls`` for ``value`` (a member is returned as is).

    Args:
        cls: the Enum.
        value: a member or a member's value.
        what: how the message names the choice (default: the Enum's name).

    Raises:
        ValueError: ``value`` is not a member, naming the valid values.
    """
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        valid = ", ".join(str(m.value) for m in cls)
        raise ValueError(f"unknown {what or cls.__name__} {value!r}; valid: {valid}") from None


class Choice(enum.Enum):
    """An Enum of string options; subclass it and add members."""

    @classmethod
    def parse(cls, value: str | Choice) -> Choice:
        """Return the member for ``value``.

        Raises:
            ValueError: ``value`` is not a member, naming the valid values.
        """
        return parse_choice(cls, value)
