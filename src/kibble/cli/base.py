"""The ``kibble`` app, its command groups, the error style of every command, and helpers.

Every mistake ends the same way: ``kibble: error: <one paragraph>`` on stderr and exit
status 1, no box, no traceback. That holds for a user error a command raises
(``KibbleError``), for an operating-system refusal about a path (permission, no space,
a name too long, ...) and for a usage mistake Click finds while parsing the command line
(unknown option, missing argument, a bad value), which also points at the command's
``--help``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from kibble import __version__
from kibble.cli.help import KibbleCommand, PlainHelpGroup
from kibble.errors import KibbleError

# Click's exceptions: typer >= 0.2x vendors its own Click (typer._click), older ones use
# click itself; typer exports BadParameter from whichever it runs on.
click_errors = importlib.import_module(typer.BadParameter.__module__)

# Operating-system errors that are about the user's paths or machine, not kibble's code:
# reported as one paragraph. Any other OSError keeps its traceback.
_USER_OS_ERRORS = {
    errno.EACCES: "check the path's permissions",
    errno.EPERM: "check the path's permissions",
    errno.EROFS: "give a path on a writable file system",
    errno.ENOSPC: "free some space, or give a path on another disk, and rerun",
    errno.EDQUOT: "free some space, or give a path on another disk, and rerun",
    errno.ENAMETOOLONG: "give a shorter path",
    errno.ELOOP: "the path has a symbolic-link loop; give another path",
    errno.EISDIR: "give a file, not a directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory; give another path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it or give another path",
    errno.ENOTEMPTY: "remove it or give another path",
    errno.EMFILE: "raise the open-files limit (ulimit -n) and rerun",
}


# pyarrow's cloud filesystems raise OSErrors without an errno, worded by their SDKs: a
# bucket that cannot be reached (no network, no credentials) is the user's, in a paragraph.
_REMOTE_STORAGE = re.compile(r"google::cloud::Status|AWS Error|Azure Error|When (getting|reading)")


def _remote_message(e: OSError) -> str:
    first = str(e).split(" error_info=")[0].split(" Learn more")[0][:400].rstrip(".")
    # The SDK's error does not say which URL: the command line does.
    urls = [arg.split("=", 1)[-1] for arg in sys.argv[1:] if "://" in arg]
    where = " or ".join(urls) or "the URL"
    return (
        f"the storage at {where} could not be reached: {first}. Check the network and the "
        "credentials (gcloud auth application-default login, AWS_PROFILE, ...) and rerun"
    )


def _one_paragraph(text: str) -> str:
    """Lines joined by spaces: a message is one paragraph, whatever its source wrote."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _fail(message: str) -> NoReturn:
    typer.echo(f"kibble: error: {_one_paragraph(message)}", err=True)
    sys.exit(1)


def _usage_message(e: Exception) -> str:
    """Click's message, lower-cased like kibble's own, plus where to read the usage."""
    message = _one_paragraph(e.format_message())
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    ctx = getattr(e, "ctx", None)
    command = ctx.command_path if ctx is not None else "kibble"
    return f"{message.rstrip('.')} (see {command} --help)"


def _os_message(e: OSError) -> str:
    # mkdir(exist_ok=True) on a path that is a file: the usual source of EEXIST.
    exists = e.errno == errno.EEXIST and e.filename and os.path.lexists(e.filename)
    if exists and not os.path.isdir(e.filename):
        return (
            f"{e.filename} is a file where kibble needs a directory; give another path, "
            "or move the file away"
        )
    what = e.strerror or str(e)
    where = f": {e.filename}" if e.filename is not None else ""
    if e.filename2 is not None:
        where += f" -> {e.filename2}"
    return f"{what.lower() if what[1:2].islower() else what}{where}; {_USER_OS_ERRORS[e.errno]}"


class KibbleGroup(PlainHelpGroup):
    """The root command and the command groups: parse and run as Typer does, show plain
    help (``kibble.cli.help``), and report every mistake in kibble's one error style (see
    the module docstring). ``CliRunner().invoke(app, ...)`` goes through here too, so
    tests see what users see."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        run = super().main
        if not standalone_mode:  # the caller handles exceptions and exit codes itself
            return run(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = run(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as e:
            # `kibble` or `kibble expert` alone: the help was asked for, in effect.
            if e.format_message():
                typer.echo(e.format_message())
            sys.exit(0)
        except click_errors.ClickException as e:  # usage: unknown option, missing argument, ...
            _fail(_usage_message(e))
        except typer.Abort:
            _fail("aborted")
        except KibbleError as e:
            _fail(str(e))
        except OSError as e:
            if e.errno is None and _REMOTE_STORAGE.search(str(e)):
                _fail(_remote_message(e))
            if e.errno not in _USER_OS_ERRORS:
                raise
            _fail(_os_message(e))
        # Not standalone, Click returns the exit code of a typer.Exit, or the command's value.
        sys.exit(rv if isinstance(rv, int) else 0)


class KibbleTyper(typer.Typer):
    """A Typer whose groups are :class:`KibbleGroup` and whose commands are
    :class:`~kibble.cli.help.KibbleCommand`: every command's ``--help`` is plain sentences,
    including a command added later with ``@app.command()``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", KibbleGroup)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or KibbleCommand, **kwargs)


app = KibbleTyper(
    name="kibble",
    help=(
        "kibble turns reinforcement-learning experts into Gato training data: experts -> "
        "Beam rollouts -> validate + filter -> Gato tokens -> curated Parquet -> trainer."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help (kibble.cli.help), for every command below this one
    pretty_exceptions_enable=False,
    add_completion=False,
    # Inherited by every subcommand's context: `kibble train -h` works too.
    context_settings={"help_option_names": ["-h", "--help"]},
)
expert_app = KibbleTyper(help="Train per-task experts and measure them (expert cards).")
pipeline_app = KibbleTyper(help="Run the Beam curation job that writes a dataset.")
app.add_typer(expert_app, name="expert", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline", no_args_is_help=True)


# Help texts several commands share.
TASK_HELP = "A task id, e.g. gym/CartPole-v1 (kibble tasks lists them)."
EXPERT_HELP = (
    "Where the expert comes from: an RLlib checkpoint directory, sb3:PATH.zip, scripted "
    "(Meta-World), bot (BabyAI) or random."
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"kibble {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print kibble's version and exit.",
        ),
    ] = False,
) -> None:
    pass


def _stderr():
    from rich.console import Console

    return Console(stderr=True)


# Options several commands share, declared once.
SeedOption = Annotated[
    int, typer.Option(min=0, metavar="N", help="Episode i resets with seed N + i.")
]
NumEnvsOption = Annotated[
    int, typer.Option(min=1, metavar="N", help="Environments stepped together.")
]


def is_url(text: str) -> bool:
    """``scheme://...`` (gs://, s3://, file:///, https://): a location that is not a path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme[:1].isalpha() and all(c.isalnum() or c in "+.-" for c in scheme)


def local_path(value: str | os.PathLike) -> Path:
    """A local path, a URL refused: a ``Path`` option alone would fold ``gs://b/x`` into
    ``gs:/b/x`` and read or write a local folder named ``gs:``. The parser of every option
    that takes a local file or directory only (``typer.Option(parser=local_path)``); one
    that accepts URLs is typed ``str`` and passes the URL on as it is."""
    if isinstance(value, Path):
        return value
    if is_url(str(value)):
        raise typer.BadParameter(
            f"{value} is a URL, but this option takes a local path only; copy it to a "
            "local path and give that"
        )
    return Path(value)


def _parse_overrides(items: list[str]) -> dict:
    """``["lr=1e-4", "gamma=0.995"]`` -> {"lr": 0.0001, "gamma": 0.995} (values as YAML,
    through the one bounded YAML parser)."""
    import yaml

    from kibble.yaml_file import parse_yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KibbleError(f"--set expects key=value, got {item!r}")
        try:
            out[key.strip()] = parse_yaml(value, f"--set {key.strip()}")
        except yaml.YAMLError as e:
            raise KibbleError(f"--set {key.strip()}: {value!r} is not a YAML value: {e}") from e
    return out


def _quiet_ray() -> None:
    """Ray and RLlib log deprecation notices and hints at WARNING on every module build;
    keep the terminal for kibble's progress and real errors. RLlib sets its loggers'
    levels when imported, so this imports it first."""
    import ray.rllib  # noqa: F401

    for name in ("ray", "ray.rllib"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main() -> None:
    """Console-script entry point (``kibble``, ``python -m kibble``)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
