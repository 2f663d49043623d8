"""Every column of every schema has a meaning in COLUMN_DOCS: the dataset card and
`kibble inspect` describe columns from the schemas, so a new column needs a sentence."""

import pyarrow as pa
import pytest

from kibble.schemas.arrow import SCHEMAS
from kibble.schemas.columns import COLUMN_DOCS, describe, type_name


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_column_is_described(name):
    missing = [f.name for f in SCHEMAS[name] if not COLUMN_DOCS.get(f.name)]
    assert not missing, f"add {missing} to kibble.schemas.columns.COLUMN_DOCS"
    assert [n for n, _, _ in describe(SCHEMAS[name])] == SCHEMAS[name].names


def test_type_names_read_like_the_format_reference():
    assert type_name(pa.list_(pa.list_(pa.int32()))) == "list<list<int32>>"
    assert type_name(pa.float64()) == "float64"
    assert type_name(pa.bool_()) == "bool"
    assert type_name(pa.list_(pa.binary())) == "list<binary>"
