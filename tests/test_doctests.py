"""The examples in docstrings run and hold."""

import doctest
import importlib

import pytest

MODULES = [
    "kibble.tokenize.continuous",
    "kibble.tokenize.discrete",
    "kibble.tokenize.images",
    "kibble.tokenize.episode",
    "kibble.schemas.parquet",
    "kibble.schemas.layout",
    "kibble.experts.sources",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0
