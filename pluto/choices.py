"""Base class for string-valued choices that reject unknown values with the valid ones."""

from __future__ import annotations

import enum


class Choice(enum.Enum):
    """An Enum of string options; subclass it and add members."""

    @classmethod
    def parse(cls, value: str | Choice) -> Choice:
        """Return the member for ``value``.

        Raises:
            ValueError: ``value`` is not a member, naming the valid values.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown {cls.__name__} {value!r}; valid: {valid}") from None
