"""Command-line options written once: from a room's pydantic config, one ``--option`` per field.

A field's docstring is its ``--help`` text and the config's default is the one shown; an option left out is
``None`` here and the config's own default there, so a default lives in one place (the config)::

    @config_options(ServeConfig, exclude={"extra_args"})
    def serve(config: ServeConfig, extra_args: list[str] = typer.Argument(None)) -> None: ...
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape

from lorastack.errors import LorastackError, validation_message

F = TypeVar("F", bound=Callable[..., Any])


def field_help(config: type[BaseModel], field: str) -> str:
    """A config field's docstring, as one paragraph (the ``--help`` text; brackets shown as written, not read as
    rich markup: ``hf://ORG/REPO[@REVISION]``)."""
    return escape(" ".join((config.model_fields[field].description or "").split()))


def config_values(**options: Any) -> dict[str, Any]:
    """The options that were given: None means "not given", the config's default."""
    return {k: v for k, v in options.items() if v is not None}


def config_options(
    config: type[BaseModel],
    *,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    flags: dict[str, tuple[str, ...]] | None = None,
    param: str = "config",
) -> Callable[[F], F]:
    """Give the decorated command one option per field of ``config`` (``only`` those, less ``exclude``); it is
    called with ``param`` set to the config built from them. ``flags`` renames a field's option
    (``{"index_dir": ("--index",)}``)."""
    names = [n for n in (only if only is not None else config.model_fields) if n not in set(exclude)]
    flags = flags or {}

    def decorate(command: F) -> F:
        signature = inspect.signature(command)
        hints = typing.get_type_hints(command, include_extras=True)
        kept = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
                if p.name != param]  # fmt: skip
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_option(config, name, flags))
            for name in names
        ]
        positional = [p for p in kept if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        keyword = [p for p in kept if p.kind is inspect.Parameter.KEYWORD_ONLY]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = config_values(**{name: kwargs.pop(name, None) for name in names})
            try:
                built = config(**values)
            except ValidationError as exc:  # a value out of its field's range: say which option, in one line
                field = next((e["loc"][0] for e in exc.errors() if e["loc"] and e["loc"][0] in values), None)
                if field is None:
                    raise
                messages = [validation_message(e) for e in exc.errors() if e["loc"][:1] == (field,)]
                given = flags.get(field) or (f"--{field.replace('_', '-')}",)
                option = next((f for f in given if f.startswith("--")), given[0])
                raise LorastackError(f"{option}: {'; '.join(messages)}") from None
            return command(*args, **{param: built}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*positional, *keyword, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in wrapper.__signature__.parameters.values()}  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _option(config: type[BaseModel], name: str, flags: dict[str, tuple[str, ...]]) -> Any:
    field = config.model_fields[name]
    default = field.get_default(call_default_factory=True)
    shown: bool | str = False if default is None else (str(default.value) if hasattr(default, "value") else str(default))
    option = typer.Option(*flags.get(name, ()), help=field_help(config, name), show_default=shown)
    return Annotated[Optional[_cli_type(field.annotation)], option]


def _cli_type(annotation: Any) -> Any:
    """The type typer parses: ``X | None`` -> X; anything typer cannot parse (a constrained or custom type) -> str,
    which the config then validates."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _cli_type(args[0])
    if typing.get_origin(annotation) is typing.Literal or annotation in (str, int, float, bool, Path):
        return annotation
    if inspect.isclass(annotation) and issubclass(annotation, (str, int, float)):
        return annotation
    return str
