"""docs/configuration.md, made from the config models' own field descriptions, so that the
reference cannot drift from the code: `make docs` writes it, a unit test fails when it is stale."""

from __future__ import annotations

import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from echo.config import REPO_ROOT, EchoConfig

REFERENCE = REPO_ROOT / "docs" / "configuration.md"

INTRO = """# Configuration reference

Echo reads one YAML file: `--config FILE`, else `$ECHO_CONFIG`, else `configs/default.yaml`
(`configs/a40.yaml` is the RunPod A40 one, `configs/instant.yaml` the load-test one). A wrong
setting stops Echo at start with the field, the value and what to do. Relative paths start at
`$ECHO_HOME`, else the working folder.

This page is generated from the code (`make docs`); do not edit it by hand.
"""


def _type(annotation: object) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(repr(a).replace("'", '"') for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation)).replace("PosixPath", "path").replace("Path", "path")


def _model_inside(annotation: object) -> type[BaseModel] | None:
    """The settings model a field holds: itself, a dict's values, or an optional one."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        annotation = typing.get_args(annotation)[1]
    elif origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        annotation = models[0] if len(models) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _default(field) -> str:
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, Path):
        return f"`{value}`"
    return "unset" if value is None else f"`{value!r}`".replace("'", '"')


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    lines = ["| setting | type | default | what it does |", "|---|---|---|---|"]
    nested = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        lines.append(f"| `{prefix}{name}` | {_type(annotation)} | {_default(field)} | {field.description} |")
        inner = _model_inside(annotation)
        if inner is not None:
            keyed = typing.get_origin(annotation) is dict
            nested.append((inner, f"{prefix}{name}.{'<name>.' if keyed else ''}"))
    out = [*lines, ""]
    for inner, inner_prefix in nested:
        out += [f"## `{inner_prefix.rstrip('.')}`", "", inner.__doc__.strip(), "", *_table(inner, inner_prefix)]
    return out


def reference() -> str:
    """The whole page."""
    return "\n".join([INTRO, "## Top level", "", *_table(EchoConfig, "")]).rstrip() + "\n"


def undescribed() -> list[str]:
    """Fields without a description (there must be none)."""
    missing = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            if not field.description:
                missing.append(prefix + name)
            inner = _model_inside(field.annotation)
            if inner is not None:
                walk(inner, f"{prefix}{name}.")

    walk(EchoConfig, "")
    return missing


if __name__ == "__main__":
    REFERENCE.write_text(reference(), encoding="utf-8")
    print(f"wrote {REFERENCE}")
