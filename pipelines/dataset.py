"""The curated dataset on disk (SPEC section 7), and writing it atomically.

Layout::

    DIR/
      data/<task>/part-00000.parquet   kept episodes, tokenized schema (<task> is the id
                                       with "/" as "__", e.g. gym__CartPole-v1)
      rejected/part-00000.parquet      every episode not kept: task, episode_id,
                                       episode_return, episode_length, reason, detail
      manifest.json                    schema version, config, per-task counts, expert
                                       values and threshold, files with rows and sha256
      README.md                        the dataset card

A dataset is assembled in a staging directory beside ``DIR`` and renamed into place
when complete: a killed job leaves no partial dataset under ``DIR``, and a rerun
replaces the whole directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

import kibble
from kibble.schemas.arrow import SCHEMA_VERSION

MANIFEST = "manifest.json"
CARD = "README.md"
DATA_DIR = "data"
REJECTED_DIR = "rejected"


def task_dir_name(task_id: str) -> str:
    return task_id.replace("/", "__")


def staging_dir(out: Path) -> Path:
    """A fresh directory beside ``out`` to assemble the dataset in."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f".{out.name}.staging-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def publish(staging: Path, out: Path) -> None:
    """Move the assembled dataset to ``out``, replacing what was there."""
    out = Path(out)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_entries(root: Path) -> list[dict[str, Any]]:
    """Every Parquet file under ``root``: relative path, rows, bytes, sha256."""
    out = []
    for path in sorted(root.rglob("*.parquet")):
        out.append(
            {
                "path": path.relative_to(root).as_posix(),
                "rows": pq.ParquetFile(path).metadata.num_rows,
                "bytes": path.stat().st_size,
                "sha256": sha256(path),
            }
        )
    return out


def write_manifest(root: Path, name: str, config: dict, tasks: dict[str, dict]) -> dict:
    manifest = {
        "name": name,
        "schema_version": SCHEMA_VERSION,
        "kibble_version": kibble.__version__,
        "config": config,
        "tasks": tasks,
        "files": file_entries(root),
    }
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, root / MANIFEST)
    return manifest


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def write_dataset_card(root: Path, manifest: dict) -> None:
    """A human README: what is in the dataset, per task, and how to read it."""
    lines = [
        f"# {manifest['name']}",
        "",
        f"Written by kibble {manifest['kibble_version']}, schema version "
        f"{manifest['schema_version']}. Episodes were rolled out, validated, filtered "
        "(Gato: return >= fraction x expert return) and tokenized; `rejected/` lists every "
        "episode not kept, with its reason.",
        "",
        "| task | expert | kept | rejected | steps kept | tokens kept | expert return "
        "| threshold (rule) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, t in sorted(manifest["tasks"].items()):
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted(t["rejected"].items())) or "0"
        lines.append(
            f"| {task} | {t['expert']} | {t['kept']} | {rejected} | {t['steps']} | "
            f"{t['tokens']} | {_num(t['expert_return'])} | {_num(t['threshold'])} ({t['rule']}) |"
        )
    pngs = sorted((root / "returns").glob("*.png"))
    lines += ["", "## Returns, kept vs rejected", ""]
    lines += [f"![{p.stem}](returns/{p.name})" for p in pngs] or [
        "(no plots: install matplotlib, `pip install 'kibble[plots]'`)"
    ]
    lines += [
        "",
        "Read it with plain tools:",
        "",
        "```python",
        "import pyarrow.dataset as ds",
        "table = ds.dataset('data', format='parquet').to_table()",
        "# DuckDB: SELECT * FROM read_parquet('data/*/*.parquet')",
        "```",
        "",
    ]
    (root / CARD).write_text("\n".join(lines))
