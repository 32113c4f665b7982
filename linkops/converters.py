"""The one cattrs converter of LinkOps, and the walk that turns its errors into field paths.

The converter is *strict*: YAML already gives typed scalars, so nothing is coerced. ``"22"`` is
not a port, ``true`` is not a name and a lone string is not a list of tags (cattrs' defaults
would happily turn each of those into something else). Unknown keys are refused so a typo such
as ``proxyjump`` cannot silently drop a setting.

*Errors*: :func:`structure` raises cattrs' exception groups unchanged; :func:`error_paths`
flattens one into ``(path, message)`` pairs, where ``path`` is a tuple of attribute names and
list indexes relative to the structured value (``("enrollment", "clientId")``,
``("tags", 2)``). :func:`cattrs.transform_error` renders the same information as
``… @ $.links.vps-01.port``; the inventory loader needs the tuple to find the YAML line.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from linkops.errors import ValidationError

T = TypeVar("T")
PathPart = str | int
# Field metadata key of the JSON Schema keywords a request field must satisfy.
CONSTRAINTS = "json_schema"
MAX_ERRORS = 50


def constraints(**keywords: Any) -> dict[str, Any]:
    """Field metadata: JSON Schema keywords (``minLength``, ``maxLength``, ``minItems``,
    ``maxItems``, ``minimum``, ``maximum``, ``uniqueItems``, ``pattern``) that
    :func:`structure_request` enforces and the OpenAPI document shows."""
    return {CONSTRAINTS: keywords}


class FieldError(ValueError):
    """A structuring failure below the value being converted (e.g. one item of a list)."""

    def __init__(self, message: str, subpath: tuple[PathPart, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.subpath = subpath


def _structure_int(value: Any, _: type) -> int:
    # bool is an int subclass; `port: true` must not become port 1.
    if type(value) is not int:
        raise FieldError("must be an integer")
    return value


def _structure_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise FieldError("must be a string")
    return value


def _structure_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise FieldError("must be true or false")
    return value


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise FieldError("must be a list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise FieldError("must be a string", (index,))
    return tuple(value)


def _structure_mapping(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError("must be a mapping")
    for key in value:
        if not isinstance(key, str):
            raise FieldError(f"key {key!r} must be a string")
    return dict(value)


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError("must be a number")
    return float(value)


def _structure_literal(value: Any, target: Any) -> Any:
    allowed = get_args(target)
    # `1 == True` in Python: compare types too, so `true` is not the literal 1.
    if not any(value == a and type(value) is type(a) for a in allowed):
        raise FieldError(f"must be one of {', '.join(map(repr, allowed))}")
    return value


_LITERAL: Any = Literal


def _is_list(target: Any) -> bool:
    return get_origin(target) is list


def _is_str_dict(target: Any) -> bool:
    return get_origin(target) is dict and get_args(target)[:1] == (str,)


def _strict_list(converter: cattrs.Converter) -> Any:
    """``list[T]``: a JSON array only (cattrs would iterate a string into characters)."""

    def hook(value: Any, target: Any) -> list[Any]:
        (item_type,) = get_args(target) or (Any,)
        if not isinstance(value, list):
            raise FieldError("must be a list")
        items: list[Any] = []
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                items.append(converter.structure(item, item_type))
            except Exception as exc:  # collected with its index, like cattrs does
                exc.add_note(IterableValidationNote(f"@ index {index}", index, item_type))
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"invalid items in {target}", errors, target)
        return items

    return hook


def _strict_str_dict(converter: cattrs.Converter) -> Any:
    """``dict[str, T]``: a JSON object whose every value is a ``T`` (errors name the key)."""

    def hook(value: Any, target: Any) -> dict[str, Any]:
        value_type = get_args(target)[1]
        if not isinstance(value, dict):
            raise FieldError("must be a mapping")
        out: dict[str, Any] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldError(f"key {key!r} must be a string")
            try:
                out[key] = converter.structure(item, value_type)
            except Exception as exc:
                exc.add_note(AttributeValidationNote(f"@ key {key}", key, value_type))
                errors.append(exc)
        if errors:
            raise ClassValidationError(f"invalid values in {target}", errors, dict)
        return out

    return hook


def _mapping_first(converter: cattrs.Converter) -> Any:
    """attrs classes: refuse a non-mapping with a readable message before cattrs indexes it."""

    def factory(cls: type[Any]) -> Any:
        inner = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True,
                                       _cattrs_detailed_validation=True)

        def structure_class(value: Any, target: type[Any]) -> Any:
            if not isinstance(value, dict):
                raise FieldError("must be a mapping")
            return inner(value, target)

        return structure_class

    return factory


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook_factory(attrs.has, _mapping_first(converter))
    # Generic containers first: the exact hooks below take precedence over them.
    converter.register_structure_hook_func(_is_list, _strict_list(converter))
    converter.register_structure_hook_func(_is_str_dict, _strict_str_dict(converter))
    converter.register_structure_hook_func(
        lambda t: get_origin(t) is _LITERAL, _structure_literal)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    # Generic aliases are not classes: match them with predicates.
    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_str_tuple)
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_mapping)
    return converter


converter = make_converter()


def structure(value: Any, cls: type[T]) -> T:
    """Structure ``value`` into ``cls`` with the strict converter (errors: see module doc)."""
    return converter.structure(value, cls)


def _leaf_messages(exc: BaseException, path: tuple[PathPart, ...]) -> list[
    tuple[tuple[PathPart, ...], str]
]:
    if isinstance(exc, ForbiddenExtraKeysError):
        return [((*path, name), "unknown field") for name in sorted(exc.extra_fields)]
    if isinstance(exc, FieldError):
        return [(path + exc.subpath, exc.message)]
    if isinstance(exc, KeyError):
        return [(path, "required field missing")]
    if isinstance(exc, BaseExceptionGroup):
        found: list[tuple[tuple[PathPart, ...], str]] = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    sub_path = (*path, note.name)
                elif isinstance(note, IterableValidationNote):
                    sub_path = (*path, note.index)
            found.extend(_leaf_messages(sub, sub_path))
        return found
    if isinstance(exc, ValueError | TypeError):
        return [(path, str(exc) or "invalid value")]
    return [(path, f"invalid value ({type(exc).__name__})")]


def error_paths(exc: BaseException) -> list[tuple[tuple[PathPart, ...], str]]:
    """Every failure inside a cattrs error as ``(path, message)``, in document order."""
    return _leaf_messages(exc, ())


# -- requests: structure, check the declared constraints, report every problem with a path --


def format_path(parts: Sequence[str | int]) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _check(value: Any, keywords: Mapping[str, Any]) -> list[str]:
    problems = []
    sized = isinstance(value, str | list | tuple | dict)
    if isinstance(value, str):
        if "minLength" in keywords and len(value) < keywords["minLength"]:
            problems.append(f"must be at least {keywords['minLength']} characters")
        if "maxLength" in keywords and len(value) > keywords["maxLength"]:
            problems.append(f"must be at most {keywords['maxLength']} characters")
        if "pattern" in keywords and re.search(keywords["pattern"], value) is None:
            problems.append(f"must match {keywords['pattern']}")
    if sized and not isinstance(value, str):
        if "minItems" in keywords and len(value) < keywords["minItems"]:
            problems.append(f"must have at least {keywords['minItems']} items")
        if "maxItems" in keywords and len(value) > keywords["maxItems"]:
            problems.append(f"must have at most {keywords['maxItems']} items")
        if keywords.get("uniqueItems") and isinstance(value, list | tuple):
            seen = [json.dumps(v, sort_keys=True, default=str) for v in value]
            if len(set(seen)) != len(seen):
                problems.append("must not contain duplicates")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in keywords and value < keywords["minimum"]:
            problems.append(f"must be at least {keywords['minimum']}")
        if "maximum" in keywords and value > keywords["maximum"]:
            problems.append(f"must be at most {keywords['maximum']}")
    return problems


def constraint_errors(value: Any, path: tuple[str | int, ...] = ()) -> list[
        tuple[tuple[str | int, ...], str]]:
    """Every declared constraint that ``value`` (a structured attrs instance) breaks."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            where = (*path, field.name)
            if item is not None:
                found.extend((where, m) for m in _check(item, field.metadata.get(CONSTRAINTS,
                                                                                 {})))
            found.extend(constraint_errors(item, where))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(constraint_errors(item, (*path, index)))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(constraint_errors(item, (*path, key)))
    return found


def validation_error(problems: Sequence[tuple[Sequence[str | int], str]]) -> ValidationError:
    errors = [{"path": format_path(path), "message": message}
              for path, message in problems[:MAX_ERRORS]]
    first = errors[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ValidationError(f"{first['path']}: {first['message']}{more}",
                           code="VALIDATION_ERROR",
                           details={"errors": errors, "error_count": len(problems)})


def structure_request(value: Any, cls: type[T]) -> T:
    """``value`` (parsed JSON) as ``cls``, or the VALIDATION_ERROR listing every problem."""
    try:
        result = converter.structure(value, cls)
    except Exception as exc:  # cattrs raises groups of anything its hooks raise
        raise validation_error(error_paths(exc)) from None
    problems = constraint_errors(result)
    if problems:
        raise validation_error(problems)
    return result


# -- query strings: text → the field's type, then the same structuring and constraints --------

# Field metadata key: the parameter's name in the URL when it is not the field's (``from``).
QUERY_NAME = "query_name"
_DIGITS = re.compile(r"[0-9]{1,10}")


def query_name(field: attrs.Attribute) -> str:  # type: ignore[type-arg]
    return str(field.metadata.get(QUERY_NAME, field.name))


def _query_kind(tp: Any) -> tuple[str, Any]:
    """``("list", item)``, ``("int", int)``, ``("literal", tp)`` or ``("str", str)`` for a
    query field's annotation (``X | None`` is ``X``: every parameter may be left out)."""
    args = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) in (
        types.UnionType, Union) else [tp]
    if len(args) != 1:
        raise TypeError(f"no query parameter type for {tp!r}")
    (inner,) = args
    if get_origin(inner) is list:
        return "list", get_args(inner)[0]
    if inner is int:
        return "int", int
    if get_origin(inner) is _LITERAL:
        return "literal", inner
    if inner is str:
        return "str", str
    raise TypeError(f"no query parameter type for {tp!r}")


def query_fields(cls: type[Any]) -> list[tuple[attrs.Attribute, str, Any]]:  # type: ignore[type-arg]
    """``(field, kind, item type)`` of each field of a query type (see :func:`_query_kind`)."""
    hints = typing.get_type_hints(cls)
    return [(f, *_query_kind(hints[f.name])) for f in attrs.fields(cls)]


def structure_query(multi: Mapping[str, Sequence[str]], cls: type[T]) -> T:
    """A query string (each parameter's values, as given) as ``cls``.

    Text becomes the field's type first: an ``int`` is plain decimal digits (no sign,
    fraction, exponent or spaces; at most 10 digits, then the field's ``maximum``), a
    ``list[str]`` takes every value given, any other parameter at most one. An empty value
    of a free-text (``str``) parameter is the same as leaving it out; an empty integer or
    enumerated value is refused. Unknown parameters are refused. Then the one converter
    structures it and checks the declared constraints, exactly as for a body: every problem
    is in one 400 ``VALIDATION_ERROR`` with ``details.errors: [{path: "$.offset", message}]``.
    """
    fields = {query_name(f): (f, kind, item) for f, kind, item in query_fields(cls)}
    values: dict[str, Any] = {}
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name, given in multi.items():
        found = fields.get(name)
        if found is None:
            problems.append(((name[:64],), "unknown parameter"))
            continue
        field, kind, _ = found
        if kind == "list":
            values[field.name] = list(given)
            continue
        if len(given) > 1:
            problems.append(((name,), "given more than once"))
            continue
        if not given or (kind == "str" and given[0] == ""):
            continue
        raw = given[0]
        if kind == "int":
            if _DIGITS.fullmatch(raw) is None:
                problems.append(((name,), "must be a non-negative integer (digits only)"))
                continue
            values[field.name] = int(raw)
        else:
            values[field.name] = raw
    names = {f.name: query_name(f) for f in attrs.fields(cast(Any, cls))}

    def renamed(found: Sequence[tuple[Sequence[str | int], str]]) -> list[
            tuple[tuple[str | int, ...], str]]:
        return [((names.get(str(p[0]), p[0]), *p[1:]) if p else (), m) for p, m in found]

    try:
        result = converter.structure(values, cls)
    except Exception as exc:  # cattrs raises groups of anything its hooks raise
        raise validation_error([*problems, *renamed(error_paths(exc))]) from None
    problems += renamed(constraint_errors(result))
    if problems:
        raise validation_error(problems)
    return result
