"""Every command's ``--help`` reads as plain sentences and states the code's real defaults
(``kibble.cli.help``): no ``<bool>``, ``<list[str]>`` or ``{task}``, no ``[x>=1]``."""

import re

import pytest
import typer
from typer.testing import CliRunner

from kibble.cli import app
from kibble.cli.help import value_name

ROOT = typer.main.get_command(app)


def _commands(command=ROOT, path=()):
    """(path, click command) for the root, every group and every command below them."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands())


def _help(path) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "kibble")
def test_help_has_no_type_markup_and_no_bracket_notes(path):
    text = _help(path)
    for markup in ("<bool>", "<list[", "<str>", "<int", "<path>", "<float", "{task}", "[x>="):
        assert markup not in text, f"kibble {' '.join(path)} --help shows {markup}:\n{text}"
    assert not re.search(r"\{\w+\}", text), text  # an argument as {name}
    assert "[default:" not in text and "[required]" not in text, text
    assert "busy machine" not in text  # a claim the code did not make true (--threads)


@pytest.mark.parametrize(
    ("path", "command"),
    [(p, c) for p, c in COMMANDS if not hasattr(c, "commands")],
    ids=lambda x: " ".join(x) if isinstance(x, tuple) else "",
)
def test_every_parameter_is_a_sentence_with_its_real_default(path, command):
    text = " ".join(_help(path).split())  # as one line: wrapping may split any sentence
    for param in command.params:
        if param.hidden:
            continue
        assert param.help, f"kibble {' '.join(path)}: {param.name} has no help"
        sentence = " ".join(param.help.split())
        assert sentence.endswith("."), f"kibble {' '.join(path)}: {sentence!r}"
        assert sentence in text, (sentence, text)
        default = param.default
        shows = default not in (None, False, [], ()) and not getattr(param, "is_flag", False)
        if param.param_type_name == "option" and shows:
            # Made from the code's own default, so it cannot drift from it.
            assert f"Default: {default}." in text, (param.name, text)
        if param.param_type_name == "argument":
            usage = f"Usage: kibble {' '.join(path)} [OPTIONS] {value_name(param)}"
            assert text.startswith(usage), text


def test_a_docstring_is_reflowed_not_broken_mid_sentence():
    text = _help(["demo"])
    # The docstring wraps at "...reach-v3 and drawer-open-v3, the BabyAI bot" in the
    # source; the help joins its lines and wraps them to the terminal's width.
    lines = [line.strip() for line in text.splitlines()]
    paragraph = " ".join(lines[lines.index("") + 1 :])
    assert "Meta-World's scripted experts for reach-v3 and drawer-open-v3" in paragraph
    assert all(len(line) <= 100 for line in text.splitlines())
    # The same wrapping for options: a continuation line is indented under the help column.
    assert re.search(r"\n  --short +Run every stage", text), text


def test_the_commands_list_gives_whole_summaries():
    text = " ".join(_help([]).split("\nCommands:")[-1].split())
    assert "..." not in text  # Click's default cuts summaries off
    assert "report expert-normalized scores." in text
