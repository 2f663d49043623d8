"""Plain-text ``--help`` for every kibble command and group.

Typer's own help shows value types as ``<bool>``, ``<list[str]>`` or ``<int range>
[x>=1]``, an argument as ``{task}``, and keeps a docstring's hard line breaks in the
middle of sentences. kibble's reads as sentences instead:

    Usage: kibble expert train [OPTIONS] TASK

      Train an RLlib expert for TASK, checkpointing to --out; rerun to resume.

    Arguments:
      TASK            Task id, e.g. gym/CartPole-v1.

    Options:
      --out DIR       The expert's directory; a rerun on it resumes. Required.
      --timesteps N   Environment steps to train for. Default: 200000.

A value is shown as one word (the parameter's ``metavar``, else its name in capitals),
a flag as none; the default comes from the code's own default value, so it is always
the real one; paragraphs are reflowed to the terminal's width.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from typer.core import TyperCommand, TyperGroup


def value_name(param: Any) -> str:
    """The word a parameter's value is shown as: its metavar, else its name in capitals."""
    return param.metavar or (param.name or "value").upper()


def _sentences(text: str | None) -> str:
    """A help string as one paragraph (its source's line breaks are not the reader's)."""
    return " ".join((text or "").split())


def _default_sentence(param: Any) -> str:
    """``Default: 4.`` from the parameter's default, or nothing when there is none to show
    (no default, a flag that is off, an empty list, or one the help text states itself)."""
    if param.show_default is False or callable(param.default):
        return ""
    default = param.default
    if default is None or default is False or default == [] or default == ():
        return ""
    if getattr(param, "is_flag", False):
        return ""
    shown = str(default) if isinstance(default, PurePath | str | int | float) else repr(default)
    return f"Default: {shown}."


def _record(param: Any) -> tuple[str, str]:
    """One row of the Arguments or Options list: the name column and the help column."""
    words = [_sentences(param.help)]
    if param.param_type_name == "argument":
        name = value_name(param)
    else:
        name = ", ".join(sorted(param.opts, key=lambda o: (o.startswith("--"), o)))
        if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            name += f" {value_name(param)}"
        words.append(_default_sentence(param))
        if param.required:
            words.append("Required.")
    return name, " ".join(w for w in words if w)


def format_params(command: Any, ctx: Any, formatter: Any) -> None:
    """The Arguments and Options sections of ``command``'s help."""
    arguments, options = [], []
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        (arguments if param.param_type_name == "argument" else options).append(_record(param))
    for title, rows in (("Arguments", arguments), ("Options", options)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


def first_paragraph(command: Any) -> str:
    """A command's one-line summary for its group's list: its short help, else the
    whole first paragraph of its help (never cut off mid-sentence)."""
    text = command.short_help or (command.help or "").strip().split("\n\n")[0]
    return _sentences(text)


class KibbleCommand(TyperCommand):
    """A command whose ``--help`` reads as sentences (see the module docstring)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = value_name(param) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        format_params(self, ctx, formatter)


class PlainHelpGroup(TyperGroup):
    """A command group whose ``--help`` reads as sentences: options as in
    :class:`KibbleCommand`, each subcommand with its whole first paragraph."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        format_params(self, ctx, formatter)
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, first_paragraph(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
