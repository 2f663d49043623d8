"""Reading a user's YAML file (dataset configs, mixtures, SB3 sidecars and RL Zoo files)
with errors that name it, and checking the type of each setting read from it.

:func:`read_yaml` is kibble's one YAML reader. It bounds what a file can make kibble
hold (:mod:`kibble.limits`): the file's bytes (:data:`~kibble.limits.TEXT_FILE_BYTES`),
and the values it holds once its aliases are expanded
(:data:`~kibble.limits.YAML_NODES`), counted on the parsed node graph before any Python
object is built, so a "billion laughs" file is refused in milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kibble.errors import KibbleError
from kibble.limits import TEXT_FILE_BYTES, YAML_NODES, check_limit, read_text


def read_yaml(path: str | Path, what: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """The parsed contents of ``path``; ``what`` names the file in errors ("config file").

    ``loader``: :class:`yaml.SafeLoader` or a subclass of it (extra safe tags).
    """
    path = Path(path)
    try:
        text = read_text(path, what, TEXT_FILE_BYTES)
    except FileNotFoundError as e:
        raise KibbleError(f"{what} {path} does not exist") from e
    try:
        return parse_yaml(text, f"{what} {path}", loader)
    except yaml.YAMLError as e:
        raise KibbleError(f"{path} is not valid YAML: {e}") from e


def parse_yaml(text: str, what: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """``text`` parsed as one YAML document, refused (:class:`~kibble.limits.TooLarge`)
    past :data:`~kibble.limits.YAML_NODES` values once its aliases are expanded; ``what``
    names it in that error. A ``yaml.YAMLError`` is the caller's to report."""
    parser = loader(text)
    try:
        node = parser.get_single_node()
        if node is None:
            return None
        check_limit(
            _expanded_size(node),
            YAML_NODES,
            f"{what}, with its aliases (*name) expanded,",
            "write the values out, or use fewer aliases of aliases",
            unit="values",
        )
        return parser.construct_document(node)
    finally:
        parser.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Nodes under ``root`` counting each alias as a copy of what it names (an alias is
    the same node object twice in the graph), without recursing: memoized per node,
    and a node inside itself (a recursive alias) counts once."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes and not done:
            continue
        children = _children(node)
        if done:
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in children)
            continue
        sizes[key] = 1  # in progress: a cycle back to it counts 1
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def want(where: str | Path, key: str, value: Any, kind: type | tuple, what: str) -> Any:
    """``value`` if it is a ``kind``, else a KibbleError "WHERE: KEY: expected WHAT, got V".

    ``bool`` is an ``int`` to Python; a bool is accepted only where ``kind`` names bool.
    """
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kind):
        raise KibbleError(f"{where}: {key}: expected {what}, got {value!r}")
    return value
