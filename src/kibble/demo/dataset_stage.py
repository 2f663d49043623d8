"""Stage 3: the Beam curation job (local runner, all cores) into ``OUT/dataset``.

The demo writes the dataset config it runs (``OUT/dataset.yaml``); the dataset is
reused when :func:`kibble.pipelines.config.reusable_dataset` finds its manifest made by
that config from the cards as they are. The progress bar counts the shards the job
reports rolled out (``beam_job.run``'s ``on_progress``).
"""

from __future__ import annotations

import time

import yaml

from kibble.demo.config import DemoConfig, DemoPaths, expert_source
from kibble.demo.stage import StageResult, fmt, in_order
from kibble.display import Display


def dataset_config_text(cfg: DemoConfig, paths: DemoPaths) -> str:
    """The dataset config as YAML (what `kibble pipeline run` takes)."""
    tasks = []
    for t in cfg.tasks:
        entry = {"task": t.task, "expert": expert_source(paths, t), "episodes": t.episodes}
        entry["card"] = str(paths.card(t.task))
        if t.max_steps:
            entry["max_steps"] = t.max_steps
        if t.noise:
            entry["noise"] = dict(t.noise)
        tasks.append(entry)
    body = {
        "name": "kibble-demo",
        "output": str(paths.dataset),
        "seed": cfg.seed,
        "filter": {"fraction": 0.8},
        "episodes_per_shard": cfg.episodes_per_shard,
        "num_envs": cfg.num_envs,
        "tasks": tasks,
    }
    header = f"# Written by kibble demo; rerun with: kibble pipeline run {paths.dataset_config}\n"
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=200)


def build_dataset(cfg: DemoConfig, paths: DemoPaths, display: Display) -> StageResult:
    """Run the Beam curation job (local runner, all cores) into ``OUT/dataset``."""
    from kibble.pipelines.config import load_config, reusable_dataset
    from kibble.schemas.layout import task_entries

    started = time.monotonic()
    paths.dataset_config.parent.mkdir(parents=True, exist_ok=True)
    paths.dataset_config.write_text(dataset_config_text(cfg, paths))
    config = load_config(paths.dataset_config)
    manifest = None if cfg.fresh else reusable_dataset(config)
    reused = manifest is not None
    if manifest is None:
        from kibble.pipelines.beam_job import planned_shards, run

        episodes = sum(j.episodes for j in config.tasks)
        description = f"Beam: {episodes} episodes of {len(config.tasks)} tasks"
        with display.bar(description, planned_shards(config)) as update:
            manifest = run(config, [], on_progress=lambda done: update(completed=done))
    entries = task_entries(manifest)
    details = [
        f"{task}: {t.counts()}; threshold {fmt(t.threshold)}"
        for task, t in in_order(entries, [t.task for t in cfg.tasks])
    ]
    kept = sum(t.kept for t in entries.values())
    planned = sum(t.planned for t in entries.values())
    verb = "reused" if reused else "curated"
    summary = f"{verb} {paths.dataset}: kept {kept} of {planned} episodes"
    seconds = time.monotonic() - started
    return StageResult(
        stage="dataset", reused=reused, seconds=seconds, summary=summary, details=details
    )
