"""URLs stay URLs: no kibble option folds ``gs://b/x`` into a local ``gs:/b/x`` (issue 25).

A parameter typed ``Path`` alone turns ``gs://bucket/x`` into ``gs:/bucket/x`` and then
reads or writes a local folder named ``gs:``. So every location parameter is either a
``str`` (a URL passes on as it is, for commands whose readers and publishers take URLs)
or a ``Path`` parsed by ``kibble.cli.base.local_path``, which refuses a URL with one
paragraph. This test reads every command's signature, so a new ``Path`` option that
forgets the parser fails it.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import typer

from kibble.cli import app
from kibble.cli.base import is_url, local_path

# Path parameters not parsed by local_path (each would fold a URL): none now; an entry
# here would have to say why.
NOT_YET: set[str] = set()


def _commands(group: typer.Typer, prefix: str = ""):
    for command in group.registered_commands:
        name = command.name or command.callback.__name__.rstrip("_").replace("_", "-")
        yield f"{prefix}{name}", command.callback
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance, f"{prefix}{sub.name} ")


def _location_parameters():
    for command, callback in _commands(app):
        hints = typing.get_type_hints(callback, include_extras=True)
        for name, hint in hints.items():
            if typing.get_origin(hint) is not typing.Annotated:
                continue
            kind, *extras = typing.get_args(hint)
            info = next((e for e in extras if isinstance(e, typer.models.ParameterInfo)), None)
            if info is None or Path not in _leaves(kind):
                continue
            if isinstance(info, typer.models.ArgumentInfo):
                label = info.metavar or name.upper()
            else:
                label = f"--{name.replace('_', '-')}"
            yield f"{command} {label}", info


def _leaves(kind) -> set:
    args = typing.get_args(kind)
    return {kind} if not args else set().union(*(_leaves(a) for a in args))


def test_every_path_parameter_refuses_a_url():
    found = dict(_location_parameters())
    assert "eval RUN_DIR" in found and "eval --card" in found, sorted(found)
    folding = {where for where, info in found.items() if info.parser is not local_path}
    assert folding <= NOT_YET, f"Path parameters that fold a URL: {sorted(folding - NOT_YET)}"
    assert set(found) >= NOT_YET, f"gone or renamed: {sorted(NOT_YET - set(found))}"


@pytest.mark.parametrize("text", ["gs://b/x", "s3://b/x", "file:///tmp/x", "hdfs://h:1/x"])
def test_local_path_refuses_urls(text):
    assert is_url(text)
    with pytest.raises(typer.BadParameter, match="is a URL"):
        local_path(text)


@pytest.mark.parametrize("text", ["x", "a/b", "/abs/x", "weird:name", "a/gs://b", "./c.json"])
def test_local_path_keeps_paths(text):
    assert not is_url(text)
    assert local_path(text) == Path(text)
