"""The dataset card: a dataset's README.md (docs/format.md section 9).

One file serves people and Hugging Face ``datasets``: its YAML front matter declares
the configurations (``default``: the kept timesteps of every task; ``rejected``: the
episodes not kept; one per task, named by its folder under ``data/``), so
``datasets.load_dataset(DIR)`` and the Hub read the folder as it is, and the body says
what was kept, what every column means (from the Arrow schemas and
``kibble.schemas.columns``, so it cannot drift from the files) and how to read it.
"""

from __future__ import annotations

import json
import os

import yaml

from kibble.schemas.arrow import REJECTED_EPISODE_SCHEMA, TOKENIZED_EPISODE_SCHEMA
from kibble.schemas.columns import markdown_table
from kibble.schemas.layout import (
    CARD,
    DATA_DIR,
    REJECTED_DIR,
    RETURNS_DIR,
    VIEWS_DIR,
    join,
    list_files,
    task_dir_name,
    task_entries,
    write_bytes,
)

LICENSE = "apache-2.0"
"""kibble's own license; the card asks whoever publishes a dataset to check its
environments' terms (e.g. Atari ROMs) and edit the ``license:`` line."""

DEFAULT_CONFIG = "default"
REJECTED_CONFIG = "rejected"
KEPT_FILES = f"{DATA_DIR}/*/*.parquet"  # every task shares one schema: one table
REJECTED_FILES = f"{REJECTED_DIR}/*.parquet"

# The Hub's size buckets (rows of the default configuration).
_SIZES = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M")]
_SIZES += [(10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B")]


def size_category(rows: int) -> str:
    return next((name for bound, name in _SIZES if rows < bound), "n>1B")


def task_configs(manifest: dict) -> dict[str, str]:
    """Config name -> task id, for every task with kept rows (a task folder under data/)."""
    paths = [f["path"] for f in manifest.get("files", [])]
    return {
        task_dir_name(task): task
        for task in sorted(task_entries(manifest))
        if any(p.startswith(f"{DATA_DIR}/{task_dir_name(task)}/") for p in paths)
    }


def _config(name: str, files: str) -> dict:
    # One split, "train": load_dataset(DIR) gives DatasetDict({"train": ...}).
    return {"config_name": name, "data_files": [{"split": "train", "path": files}]}


def front_matter(manifest: dict) -> dict:
    """The Hub's dataset card metadata: license, task category, tags, configs."""
    tasks = task_entries(manifest)
    families = sorted({task.split("/", 1)[0] for task in tasks})
    # No `rejected` configuration when nothing was rejected: `datasets` cannot build an
    # empty split, and would end `load_dataset(DIR, "rejected")` in a traceback.
    rejected = [_config(REJECTED_CONFIG, REJECTED_FILES)] if _rejected_rows(manifest) else []
    configs = [
        {**_config(DEFAULT_CONFIG, KEPT_FILES), "default": True},
        *rejected,
        *(_config(name, f"{DATA_DIR}/{name}/*.parquet") for name in task_configs(manifest)),
    ]
    return {
        "pretty_name": manifest["name"],
        "license": LICENSE,
        "task_categories": ["reinforcement-learning"],
        "tags": ["kibble", "gato", "offline-reinforcement-learning", "tokenized", *families],
        "size_categories": [size_category(sum(t.steps for t in tasks.values()))],
        "configs": configs,
    }


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _rows(manifest: dict, prefix: str) -> int:
    return sum(f["rows"] for f in manifest.get("files", []) if f["path"].startswith(prefix))


def _rejected_rows(manifest: dict) -> int:
    return _rows(manifest, REJECTED_DIR + "/")


def space_summary(description: object) -> str:
    """A manifest space description (``kibble.schemas.raw_values.describe_space``) in one short
    line, ``Dict(image: Box(7, 7, 3) uint8 image, mission: Text)``; bounds are left to
    manifest.json."""
    tree = description.get("space") if isinstance(description, dict) else None
    return _tree(tree) if isinstance(tree, dict) else json.dumps(description)[:80]


def _tree(tree: dict) -> str:
    kind = tree.get("type", "?")
    shape = ", ".join(map(str, tree.get("shape", [])))
    if kind == "Box":
        return f"Box({shape}) {tree.get('dtype', '')}" + (" image" if tree.get("image") else "")
    if kind == "Discrete":
        return f"Discrete({tree.get('n', '?')})"
    if kind in ("MultiDiscrete", "MultiBinary"):
        return f"{kind}({shape})"
    subspaces = tree.get("spaces")
    if kind == "Dict" and isinstance(subspaces, dict):
        return "Dict(" + ", ".join(f"{k}: {_tree(v)}" for k, v in subspaces.items()) + ")"
    if kind == "Tuple" and isinstance(subspaces, list):
        return "Tuple(" + ", ".join(_tree(v) for v in subspaces) + ")"
    return kind


def card_text(manifest: dict, plots: list[str], views: list[str] | None = None) -> str:
    """The whole README.md; ``plots``: the return histograms, ``views``: the episode
    pictures (``kibble.reading.viewer``), both relative to their folder."""
    tasks = task_entries(manifest)
    per_task = task_configs(manifest)
    example = next(iter(per_task), "gym__CartPole-v1")
    meta = yaml.safe_dump(front_matter(manifest), sort_keys=False, default_flow_style=False)
    lines = [
        "---",
        meta.rstrip("\n"),
        "---",
        "",
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
    for task, t in sorted(tasks.items()):
        lines.append(
            f"| {task} | {t.expert} | {t.kept} | {t.rejected_text()} | {t.steps:,} | "
            f"{t.tokens:,} | {_num(t.expert_return)} | {_num(t.threshold)} ({t.rule}) |"
        )
    raw_tasks = manifest.get("tasks", {})
    if any("observation_space" in raw_tasks[task] for task in tasks):
        lines += ["", "| task | observation space | action space |", "|---|---|---|"]
        for task in sorted(tasks):
            obs, act = (raw_tasks[task].get(k) for k in ("observation_space", "action_space"))
            lines.append(f"| {task} | `{space_summary(obs)}` | `{space_summary(act)}` |")
        lines += [
            "",
            "`manifest.json` describes each space in full (bounds, and where each leaf is in "
            "`observation`, `action` and `texts`).",
        ]
    lines += [
        "",
        "## Configurations",
        "",
        "| configuration | rows | what |",
        "|---|---|---|",
        f"| `{DEFAULT_CONFIG}` | {_rows(manifest, DATA_DIR + '/'):,} | kept timesteps of every "
        f"task, one row per step (`{KEPT_FILES}`) |",
        f"| `{REJECTED_CONFIG}` | {_rejected_rows(manifest):,} | every episode not "
        f"kept, one row per episode, with its reason (`{REJECTED_FILES}`) |"
        if _rejected_rows(manifest)
        else f"| (none) | 0 | nothing was rejected: `{REJECTED_FILES}` is empty and there is "
        f"no `{REJECTED_CONFIG}` configuration |",
    ]
    lines += [
        f"| `{name}` | {_rows(manifest, f'{DATA_DIR}/{name}/'):,} | kept timesteps of {task} |"
        for name, task in per_task.items()
    ]
    lines += [
        "",
        "## Reading it",
        "",
        "Set `DATASET_DIR` to this folder (a local path; pyarrow and DuckDB also take "
        "`gs://` or `s3://` URLs), or to `USER/NAME` on the Hub for `load_dataset`:",
        "",
        "```python",
        'DATASET_DIR = "/path/to/this/dataset"  # <- the folder holding this README.md',
        "",
        "from datasets import load_dataset",
        "",
        "steps = load_dataset(DATASET_DIR, split='train')  # kept timesteps, every task",
        "rejected = load_dataset(DATASET_DIR, 'rejected', split='train')"
        if _rejected_rows(manifest)
        else "# nothing was rejected, so there is no 'rejected' configuration",
        f"one_task = load_dataset(DATASET_DIR, '{example}', split='train')",
        "",
        "import pyarrow.dataset as ds",
        "",
        f"table = ds.dataset(f'{{DATASET_DIR}}/{DATA_DIR}', format='parquet').to_table()",
        "```",
        "",
        f"DuckDB: `SELECT * FROM read_parquet('DATASET_DIR/{KEPT_FILES}')`. Rows of an "
        "episode are contiguous and in step order; `manifest.json` lists every file with "
        "its rows and sha256, and `kibble inspect DATASET_DIR` verifies them.",
        "",
        "## Columns",
        "",
        f"`{DEFAULT_CONFIG}` and the per-task configurations (`{DATA_DIR}/`, schema "
        f"`tokenized_episode`):",
        "",
        *markdown_table(TOKENIZED_EPISODE_SCHEMA),
        "",
        f"`{REJECTED_CONFIG}` (`{REJECTED_DIR}/`, schema `rejected_episode`):",
        "",
        *markdown_table(REJECTED_EPISODE_SCHEMA),
        "",
        "The token layout (vocabulary; a timestep is its observation tokens, a separator "
        "token, its action tokens) is in kibble's docs/format.md, sections 2-8.",
        "",
        "## Returns, kept vs rejected",
        "",
    ]
    lines += [f"![{p[: -len('.png')]}]({RETURNS_DIR}/{p})" for p in plots] or [
        "(no plots: install matplotlib, `pip install 'kibble[plots]'`)"
    ]
    if views:
        lines += ["", "## One episode per task", ""]
        lines += [
            "The first kept episode of each task: its first frames with the step, action and "
            "reward (a task with images), or its observation, action and reward values. "
            "`kibble view DATASET_DIR --task TASK --out FILE.mp4` (or `.gif`, `.png`) draws "
            "any kept episode whole.",
            "",
        ]
        lines += [f"![{v.rsplit('.', 1)[0]}]({VIEWS_DIR}/{v})" for v in views]
    lines += [
        "",
        "## On the Hugging Face Hub",
        "",
        "This folder is a Hub dataset as it is (the configurations above are in this "
        "card's front matter). Upload it, then `load_dataset('USER/NAME')`:",
        "",
        "```",
        "hf upload USER/NAME DATASET_DIR . --repo-type dataset",
        "# huggingface_hub < 1.0: the same arguments to `huggingface-cli upload`",
        "```",
        "",
        f"The card says `license: {LICENSE}` (kibble's); check the terms of the "
        "environments the episodes come from (e.g. Atari ROMs) and edit it before publishing.",
        "",
    ]
    return "\n".join(lines)


def write_dataset_card(root: str | os.PathLike, manifest: dict) -> None:
    """Write ``root/README.md`` for the dataset ``manifest`` describes."""
    plots = [p for p in list_files(join(root, RETURNS_DIR)) if p.endswith(".png")]
    views = [v for v in list_files(join(root, VIEWS_DIR)) if v.endswith((".gif", ".png"))]
    write_bytes(join(root, CARD), card_text(manifest, plots, views).encode())
