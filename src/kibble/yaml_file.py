"""Reading a user's YAML file (dataset configs, mixtures) with errors that name it."""

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
