"""What the Beam job needs on runners other than the local one (Dataflow, Flink, Spark).

Remote workers share nothing with the machine that launches the job, so:

* kibble's code goes to them as a package: unless the command line already says how
  (``--setup_file``, ``--extra_package``, ``--sdk_container_image``), kibble passes
  ``--setup_file=<checkout>/setup.py`` and Beam's stager builds an sdist of the
  checkout for the workers to ``pip install``. That installs kibble's core
  dependencies only; environment families and RLlib experts need extras, which a
  worker image provides (docs/scaling-out.md).
* the dataset's staging location and output are URLs every worker reaches
  (``gs://...``); a local output path is refused on Dataflow.
* expert checkpoints on the launcher's disk are copied next to the staging files
  (``<staging>/.experts/``) and each worker copies them to its own disk once. An SB3
  zip travels in a folder with the files its loading reads (its sidecar, the
  VecNormalize JSON the sidecar names, the RL Zoo's files), in the same relative
  layout. Expert cards are read on the launcher (``beam_job.run``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import tomllib
from dataclasses import replace
from pathlib import Path

import pyarrow.fs as pafs
from apache_beam.options.pipeline_options import (
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from kibble.errors import KibbleError
from kibble.experts.sb3_setup import check_portable, companion_files
from kibble.experts.sources import ExpertSource, parse_source
from kibble.pipelines.curation import EXPERTS
from kibble.pipelines.stages import TaskJob
from kibble.schemas import layout

log = logging.getLogger(__name__)

# Runners whose workers run on this machine: nothing to ship.
_LOCAL_RUNNERS = {r.lower() for r in (*StandardOptions.LOCAL_RUNNERS, "InteractiveRunner")}


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name as Beam resolves it: ``dataflow`` -> ``dataflowrunner``."""
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    if not isinstance(runner, str):
        runner = type(runner).__name__
    name = runner.rsplit(".", 1)[-1].lower()
    return name if name.endswith("runner") else name + "runner"


def is_remote(options: PipelineOptions) -> bool:
    return runner_name(options) not in _LOCAL_RUNNERS


def says_how_code_reaches_workers(options: PipelineOptions) -> bool:
    setup = options.view_as(SetupOptions)
    return bool(
        setup.setup_file
        or setup.extra_packages
        or options.view_as(WorkerOptions).sdk_container_image
    )


def find_setup_file() -> Path:
    """``setup.py`` of the kibble checkout this code runs from, or of the current directory.

    An editable install links to the checkout; a regular install has none, and then
    the current directory must be one.
    """
    here = Path(__file__).resolve().parents[1]  # <checkout>/pipelines/remote.py
    for root in dict.fromkeys([here, Path.cwd()]):
        try:
            project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            continue
        if project == "kibble" and (root / "setup.py").is_file():
            return root / "setup.py"
    raise KibbleError(
        "a remote runner's workers need kibble's code, and no kibble checkout was found "
        f"(looked in {here} and {Path.cwd()}): run from the repository root, or pass "
        "--setup_file=PATH/TO/kibble/setup.py, --extra_package=kibble-WHEEL.whl, or "
        "--sdk_container_image=IMAGE with kibble installed"
    )


def worker_args(args: list[str], output: str) -> list[str]:
    """Beam arguments for a remote runner: the package for workers, output checked."""
    options = PipelineOptions(args)
    if not is_remote(options):
        return list(args)
    runner = runner_name(options)
    if not layout.is_url(output):
        message = (
            f"the output {output} is a local path, which {runner} workers do not share; give "
            "a URL every worker reaches, e.g. --out gs://BUCKET/datasets/NAME"
        )
        if "dataflow" in runner:
            raise KibbleError(message)
        log.warning("%s (fine only if the path is a mount every worker sees)", message)
    if says_how_code_reaches_workers(options):
        return list(args)
    setup_file = find_setup_file()
    log.info("workers get kibble from an sdist of %s", setup_file.parent)
    return [*args, f"--setup_file={setup_file}"]


def ship_experts(jobs: list[TaskJob], root: str) -> dict[str, TaskJob]:
    """Copy local expert checkpoints under ``root/.experts/``; jobs that load them from there.

    Checkpoints missing here are left as they are (a worker image may hold them).
    """
    fs, base = layout.resolve(layout.join(root, EXPERTS))
    shipped: dict[str, str] = {}
    out = {}
    for job in jobs:
        source = parse_source(job.expert)
        local = Path(source.location or "")
        if not source.has_checkpoint or layout.is_url(source.location) or not local.exists():
            out[job.task] = job
            continue
        key = str(local.resolve())
        if key not in shipped:
            number = f"{len(shipped):02d}"
            if source.kind == "sb3" and local.is_file():
                name = f"{number}-{local.stem}"
                inside = _ship_sb3(local, fs, f"{base}/{name}")
                shipped[key] = layout.join(root, EXPERTS, name, inside)
            else:
                name = f"{number}-{local.resolve().name}"
                _ship_path(local, fs, f"{base}/{name}")
                shipped[key] = layout.join(root, EXPERTS, name)
        out[job.task] = replace(job, expert=ExpertSource(source.kind, shipped[key]).text)
    return out


def _ship_path(local: Path, fs: pafs.FileSystem, target: str) -> None:
    """Copy a checkpoint directory or file to ``target`` on ``fs``."""
    if local.is_dir():
        pafs.copy_files(
            str(local.resolve()),
            target,
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=fs,
        )
        return
    fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(target) as f:
        f.write(local.read_bytes())


def _ship_sb3(zip_path: Path, fs: pafs.FileSystem, folder: str) -> str:
    """Copy an SB3 zip and its companion files into ``folder``, in their relative layout
    (rooted at the nearest folder holding them all); returns the zip's path in it.

    Paths are made absolute without following links: the Hugging Face cache's files are
    links to blobs named by hash, and loading looks the companions up by name beside
    the zip.
    """
    check_portable(zip_path)
    files = [Path(os.path.abspath(p)) for p in (zip_path, *companion_files(zip_path))]
    top = Path(os.path.commonpath([p.parent for p in files]))
    for path in files:
        _ship_path(path, fs, f"{folder}/{path.relative_to(top).as_posix()}")
    log.info("shipping sb3:%s with %d companion file(s)", zip_path, len(files) - 1)
    return files[0].relative_to(top).as_posix()


def fetch_expert(location: str) -> str:
    """A local path holding the checkpoint at ``location``: a URL is copied to local disk."""
    if not layout.is_url(location):
        return location
    fs, path = layout.resolve(location)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.NotFound:
        raise KibbleError(f"expert checkpoint {location} does not exist")
    local = tempfile.mkdtemp(prefix="kibble-expert-")
    parts = path.split("/")
    if kind == pafs.FileType.File and EXPERTS in parts[:-2]:
        # A file inside a shipped folder (an SB3 zip and its companions): the whole folder.
        at = len(parts) - 1 - parts[::-1].index(EXPERTS) + 2
        pafs.copy_files(
            "/".join(parts[:at]),
            local,
            source_filesystem=fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        local = f"{local}/{'/'.join(parts[at:])}"
    elif kind == pafs.FileType.File:
        local = f"{local}/{path.rsplit('/', 1)[-1]}"
        with fs.open_input_stream(path) as f, open(local, "wb") as g:
            g.write(f.read())
    else:
        pafs.copy_files(
            path, local, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
        )
    log.info("copied expert %s to %s", location, local)
    return local
