"""Validation of the few request fields whose type changes what the mock produces."""

from __future__ import annotations

from typing import Any

from gateway.mock_upstream.errors import Fault


class InvalidParam(Exception):
    """A request field has the wrong type or range; carries the 400 to send back."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.fault = Fault(400, message=message, param=param)


def optional_int(body: dict[str, Any], name: str, *, low: int, high: int) -> int | None:
    """``body[name]`` as an int in ``[low, high]``, ``None`` if absent or null."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParam(name, f"'{name}' must be an integer between {low} and {high}, got {value!r}.")
    return value


def required_list(body: dict[str, Any], name: str) -> list[Any]:
    """``body[name]`` as a non-empty list."""
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise InvalidParam(name, f"'{name}' must be a non-empty array.")
    return value


def model_name(body: dict[str, Any]) -> str:
    """The ``model`` field, which every endpoint requires."""
    value = body.get("model")
    if not isinstance(value, str) or not value:
        raise InvalidParam("model", "you must provide a model parameter")
    return value
