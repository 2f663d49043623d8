"""The ``kibble`` command line (the README's Commands table).

Every command has ``--help`` (and ``-h``); ``kibble --version`` prints the version. Every
mistake, a usage one included, ends in ``kibble: error: <one paragraph>`` on stderr and
exit status 1, never a traceback (``kibble.cli.base``); anything else is a bug and keeps
its traceback.

A module per job: ``base`` (the app, its error style, shared helpers), ``help`` (the
plain-sentence ``--help`` of every command), ``expert_commands`` (``tasks``, ``expert
train``, ``expert eval``), ``data_commands`` (``rollout``, ``pipeline run``, ``inspect``,
``view``, ``export``) and ``training_commands`` (``train``, ``eval``, ``demo``).
Importing them registers their commands, in the order ``--help`` lists them.
"""

# The order of these imports is the order --help lists the commands.
# isort: off
from kibble.cli import expert_commands, data_commands, training_commands  # noqa: F401  (registers the commands)

# isort: on
from kibble.cli.base import app, main

__all__ = ["app", "main"]
