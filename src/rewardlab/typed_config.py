"""The base of every typed configuration: strict pydantic models whose errors name the full parameter path.

Each field carries its default, its type and range, and a one-line help (`setting`). Values arrive from YAML,
where `1e-5` (no dot) reads as a string: pydantic's lax mode turns such strings into numbers, and anything
that is not one is refused with the parameter's path (`grm_train.train.learning_rate must be a number, got
'fast'`).
"""

from __future__ import annotations

import difflib
from typing import Any

import typing

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rewardlab.errors import ParameterError

# json_schema_extra key of fields that change how a run is observed or how fast it goes, not what it produces:
# they are left out of the run's identity (`rewardlab.run_identity`).
OBSERVATIONAL = "observational"


def setting(default: Any = ..., help: str = "", *, observational: bool = False, **constraints: Any) -> Any:
    """A field with its default, one line of help and its constraints (pydantic's ge, gt, le, lt, ...)."""
    extra = {OBSERVATIONAL: True} if observational else None
    if callable(default):  # a class or a function makes a fresh default per instance
        return Field(default_factory=default, description=help, json_schema_extra=extra, **constraints)
    return Field(default, description=help, json_schema_extra=extra, **constraints)


class TypedConfig(BaseModel):
    """Unknown keys are refused; values are checked again when a field is assigned."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: Any) -> Any:
        # pydantic's lax mode reads true as 1; in a parameter file that is a mistake, not a number.
        annotation = cls.model_fields[info.field_name].annotation
        kinds = set(typing.get_args(annotation)) | {annotation}
        if isinstance(value, bool) and kinds & {int, float} and bool not in kinds:
            raise ValueError(f"must be a number, got {value!r}")
        return value

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, path: str = ""):
        """Validate a plain mapping (e.g. Kedro parameters); a ParameterError names every bad field by `path`."""
        try:
            return cls.model_validate(dict(values or {}))
        except ValidationError as error:
            raise ParameterError("\n".join(describe_errors(error, cls, path))) from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values; `from_dict(to_dict())` gives an equal config."""
        return self.model_dump(mode="json")

    @classmethod
    def observational_fields(cls) -> frozenset[str]:
        return frozenset(name for name, info in cls.model_fields.items()
                         if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(OBSERVATIONAL))


def _model_at(model: type[BaseModel] | None, loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the field at `loc` (None once the path leaves typed models)."""
    annotation: Any = model
    for key in loc:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(key, str):
            field = annotation.model_fields.get(key)
            annotation = field.annotation if field is not None else None
        else:  # an item of a list or a dict: its value type
            args = typing.get_args(annotation)
            annotation = args[-1] if args else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def error_items(error: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[tuple, str]]:
    """(location, what is wrong) per problem; the text starts with its separator (" must be ...", ": ...")."""
    items = []
    for item in error.errors(include_url=False):
        loc = tuple(key for key in item["loc"] if not (isinstance(key, str) and key.startswith("function-")))
        ctx, got, kind = item.get("ctx") or {}, item.get("input"), item["type"]
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = sorted(parent.model_fields) if parent is not None else []
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            items.append((loc, f" is not a known parameter{hint}" + (f"; known: {', '.join(known)}" if known else "")))
            continue
        if kind == "value_error":
            message = str(ctx.get("error", item["msg"]))
            items.append((loc, f" {message}" if message.startswith("must ") else f": {message}"))
            continue
        requirement = {
            "greater_than": lambda: f"must be > {ctx.get('gt')}",
            "greater_than_equal": lambda: f"must be >= {ctx.get('ge')}",
            "less_than": lambda: f"must be < {ctx.get('lt')}",
            "less_than_equal": lambda: f"must be <= {ctx.get('le')}",
            "literal_error": lambda: f"must be one of {ctx.get('expected')}",
            "float_parsing": lambda: "must be a number",
            "float_type": lambda: "must be a number",
            "finite_number": lambda: "must be a finite number",
            "int_parsing": lambda: "must be a whole number",
            "int_type": lambda: "must be a whole number",
            "int_from_float": lambda: "must be a whole number",
            "bool_parsing": lambda: "must be true or false",
            "bool_type": lambda: "must be true or false",
            "string_type": lambda: "must be text",
            "string_pattern_mismatch": lambda: "must be a non-empty name",
            "missing": lambda: "is required",
            "dict_type": lambda: "must be a mapping",
            "list_type": lambda: "must be a list",
        }.get(kind, lambda: item["msg"][:1].lower() + item["msg"][1:])()
        items.append((loc, f" {requirement}" + ("" if kind == "missing" else f", got {got!r}")))
    return items


def describe_errors(error: ValidationError, model: type[BaseModel] | None = None, path: str = "") -> list[str]:
    """One line per problem: `<full.path> must be ..., got <value>`."""
    return [f"{join_path(path, loc) or 'parameters'}{text}" for loc, text in error_items(error, model)]


def join_path(path: str, loc: tuple) -> str:
    """`grm_train` + ("train", "learning_rate") -> `grm_train.train.learning_rate`; list items as `[i]`."""
    parts = [path] if path else []
    parts += [f"[{key}]" if isinstance(key, int) else str(key) for key in loc]
    return ".".join(parts).replace(".[", "[")
