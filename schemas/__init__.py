"""The Arrow/Parquet contracts (versioned) and the typed records that cross stages.

- ``records``: ``Episode`` (raw) and ``TokenizedEpisode``.
- ``arrow``: the explicit pyarrow schemas, their version, record -> table conversion.
- ``parquet``: compressed, atomically written files with row groups sized for training.
- ``validate``: which columns of a file do not match, with expected and found types.
- ``spaces``: raw values beside tokens: JSON space descriptions, flatten / unflatten.
"""

from kibble.schemas.arrow import (
    RAW_EPISODE_SCHEMA,
    SCHEMA_VERSION,
    TOKENIZED_EPISODE_SCHEMA,
    raw_episode_to_table,
    tokenized_episode_to_table,
)
from kibble.schemas.parquet import EpisodeFileWriter, read_schema_version, write_episode_tables
from kibble.schemas.records import Episode, TokenizedEpisode
from kibble.schemas.validate import Mismatch, check_file, validate_file

__all__ = [
    "RAW_EPISODE_SCHEMA",
    "SCHEMA_VERSION",
    "TOKENIZED_EPISODE_SCHEMA",
    "Episode",
    "EpisodeFileWriter",
    "Mismatch",
    "TokenizedEpisode",
    "check_file",
    "raw_episode_to_table",
    "read_schema_version",
    "tokenized_episode_to_table",
    "validate_file",
    "write_episode_tables",
]
