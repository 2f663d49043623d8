"""A shim for Apache Beam's ``--setup_file``: every setting lives in pyproject.toml.

Beam's stager builds the package that remote workers install with ``python -m build
--sdist``, and without pypa ``build`` falls back to ``python setup.py sdist``, which
needs this file (a pyproject.toml-only project has no fallback). ``kibble pipeline
run`` passes it on remote runners (``kibble.pipelines.remote``).
"""

from setuptools import setup

setup()
