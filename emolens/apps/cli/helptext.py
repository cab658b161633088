"""How every command's ``--help`` reads: paragraphs that wrap to the terminal, value names for types.

Typer prints a docstring's hard line breaks as they are and then wraps each line to the terminal
(ragged lines), and names option types by their Python annotation (``<bool>`` for a flag that
takes no value, ``<list[Path]>``). :class:`HelpCommand` joins each paragraph's lines (list items
and indented lines keep theirs), gives options click's value names (``PATH``, ``TEXT``, ``INT``;
none for flags) and shows no type beside arguments, whose names already say what they take.
"""

from __future__ import annotations

import inspect
import re
from typing import Any, get_args

from typer.core import TyperArgument, TyperCommand, TyperOption

#: A line that starts a list item or is indented keeps its line break.
_KEEP_BREAK = re.compile(r"^(\s|[-*•]\s|\d+[.)]\s)")
#: Python type → the value name shown in help.
VALUE_NAMES = {str: "TEXT", int: "INT", float: "FLOAT", bool: "BOOL"}


def reflow(text: str) -> str:
    """``text`` with each paragraph's hard line breaks joined into spaces, except before list
    items and indented lines, and in paragraphs that start with click's no-rewrap mark ``\\b``."""
    paragraphs = []
    for paragraph in text.split("\n\n"):
        if paragraph.lstrip("\n").startswith("\b"):
            paragraphs.append(paragraph)
            continue
        lines = paragraph.split("\n")
        joined = lines[0]
        for line in lines[1:]:
            joined += ("\n" + line) if _KEEP_BREAK.match(line) else (" " + line.strip())
        paragraphs.append(joined)
    return "\n\n".join(paragraphs)


def value_name(option: TyperOption) -> str:
    """What an option's value is called in help: nothing for a flag, else ``PATH``, ``TEXT``,
    ``INT``, ``FLOAT`` (choices as ``a|b|c``)."""
    if option.is_flag or option.count:
        return ""
    desc = option.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        return desc.path_type.upper()
    kind = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    return VALUE_NAMES.get(kind, getattr(kind, "__name__", "VALUE").upper())


class _NamedArgument(TyperArgument):
    """An argument shown by its name alone (no ``<list[Path]>`` type column)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class HelpCommand(TyperCommand):
    """A typer command whose help reads as described in this module's docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = reflow(inspect.cleandoc(self.help))
        for param in self.params:
            if isinstance(param, TyperOption) and param.metavar is None:
                param.metavar = value_name(param)
            elif type(param) is TyperArgument:
                param.__class__ = _NamedArgument  # same state, one display method differs

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""  # --help is a flag too
        return option
