"""Typed config tables: the pydantic base of the config sections, strict value types, and their one-line errors.

:func:`validated` builds a table from TOML or JSON values; pydantic's error becomes a
:class:`ConfigError` of one line naming the key, e.g. ``train.batch_size: Input should be greater than
or equal to 1, got 0`` or ``stages[1].lr: ...``, which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError

from harmonic_forecast.errors import ConfigError


def _python_scalar(value: Any) -> Any:
    """A numpy scalar (``np.int64(3)``, ``np.float32(0.1)``) as the Python number it holds; anything else as is."""
    item = getattr(value, "item", None)
    if item is not None and type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return item()
    return value


Int = Annotated[int, Strict(), BeforeValidator(_python_scalar)]  # an integer (numpy's too): not a bool, float or string
Float = Annotated[
    float, Strict(), BeforeValidator(_python_scalar)
]  # a number: an int is taken, a bool or string is not
Positive = Annotated[Int, Field(ge=1)]
Count = Annotated[Int, Field(ge=0)]
NonNegative = Annotated[Float, Field(ge=0)]
Rate = Annotated[Float, Field(gt=0)]
T = TypeVar("T", bound=BaseModel)


class Table(BaseModel):
    """A TOML table: unknown keys are errors, numbers finite, and the values fixed once read."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def validated(table: type[T], values: Any, section: str = "", tables: Mapping[str, type[BaseModel]] | None = None) -> T:
    """``table`` from ``values`` (the ``[section]`` table), or a :class:`ConfigError` of one line naming the key.

    ``tables`` names the table class under each top-level key (``""``: the root; a dotted path such as
    ``signal.families`` for a nested one), for the known keys listed when a key is unknown; the default
    is ``table`` itself.
    """
    try:
        return table.model_validate(values)
    except ValidationError as error:
        raise config_error(error, values, section, tables or {section: table}) from None


def config_error(
    error: ValidationError, values: Any, section: str, tables: Mapping[str, type[BaseModel]]
) -> ConfigError:
    """``error``, raised validating ``values`` (the ``[section]`` table), as a :class:`ConfigError` of one line."""
    errors = error.errors()
    if section:
        errors = [{**e, "loc": (section, *e["loc"])} for e in errors]
        values = {section: values}
    return ConfigError(one_line(errors, values, tables))


def one_line(errors: list[Any], values: Any, tables: Mapping[str, type[BaseModel]]) -> str:
    """Pydantic's first error as one line, ``key.sub[i]: message, got value``.

    The key is the part of the error's location found in ``values`` (a union adds the names of its
    alternatives); of the errors under the first one's key, the one reaching deepest is told (among a
    union's alternatives, those that took the value's type). A :class:`ConfigError` raised in a
    validator names its key itself.
    """
    located = [(_found(e["loc"], values, e["type"] == "missing"), e) for e in errors]
    first = located[0][0]
    key = max((path for path, _ in located if path[: len(first)] == first), key=len)
    alternatives = [e for path, e in located if path == key]
    past_type = [e for e in alternatives if not (e["type"].endswith("_type") or e["type"] == "literal_error")]
    alternatives = past_type or alternatives
    cause = alternatives[0].get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)
    name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in key).lstrip(".") or "config"
    kind = alternatives[0]["type"]
    if kind == "extra_forbidden":
        path = ".".join(part for part in key[:-1] if isinstance(part, str))  # e.g. signal.families
        table = tables[path] if path in tables else tables[key[0] if len(key) > 1 else ""]
        known = [field for field in table.model_fields if field not in getattr(table, "refused_fields", ())]
        return f"{'config.' if len(key) == 1 else ''}{name}: unknown key (known: {', '.join(known)})"
    messages = [str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"] for e in alternatives]
    message = " or ".join([messages[0], *(text.removeprefix("Input should be ") for text in messages[1:])])
    if kind != "missing" and not isinstance(alternatives[0]["input"], dict):
        message += f", got {alternatives[0]['input']!r}"
    return f"{name}: {message}".replace("\n", " ")


def _found(loc: tuple[str | int, ...], values: Any, missing: bool) -> tuple[str | int, ...]:
    """The parts of ``loc`` that index into ``values``, past a union's alternative names.

    A key absent from its table (missing, or filled in by a default or a validator) ends it, with the rest of ``loc``.
    """
    found = []
    for depth, part in enumerate(loc):
        if isinstance(values, dict | list) and _holds(values, part):
            values = values[part]
            found.append(part)
        elif isinstance(values, dict) or (missing and depth == len(loc) - 1):
            return (*found, *loc[depth:])
        # else: a union's name for one of its alternatives
    return tuple(found)


def _holds(values: dict[str, Any] | list[Any], part: str | int) -> bool:
    if isinstance(values, dict):
        return part in values
    return isinstance(part, int) and 0 <= part < len(values)
