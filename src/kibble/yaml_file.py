"""Reading a user's YAML file (dataset configs, mixtures) with errors that name it,
and checking the type of each setting read from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kibble.errors import KibbleError


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed contents of ``path``; ``what`` names the file in errors ("config file")."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise KibbleError(f"{what} {path} does not exist") from e
    except yaml.YAMLError as e:
        raise KibbleError(f"{path} is not valid YAML: {e}") from e


def want(where: str | Path, key: str, value: Any, kind: type | tuple, what: str) -> Any:
    """``value`` if it is a ``kind``, else a KibbleError "WHERE: KEY: expected WHAT, got V".

    ``bool`` is an ``int`` to Python; a bool is accepted only where ``kind`` names bool.
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kind):
        raise KibbleError(f"{where}: {key}: expected {what}, got {value!r}")
    return value
