"""The curation's Beam executor on a real dask.distributed cluster (Beam's DaskRunner:
``--runner DaskRunner``), two worker processes: the same dataset, byte for byte, as the
in-process executor writes (which test_beam_job shows equal to Beam's local runner's)."""

import hashlib

import pytest

distributed = pytest.importorskip("distributed")

from kibble.errors import KibbleError  # noqa: E402
from kibble.pipelines import beam_job, in_process  # noqa: E402
from kibble.pipelines.config import load_config  # noqa: E402

CONFIG = """
name: dasktest
output: {out}
seed: 5
episodes_per_shard: 3
tasks:
  - {{task: gym/CartPole-v1, expert: random, episodes: 9}}
  - {{task: metaworld/reach-v3, expert: scripted, episodes: 2, max_steps: 20}}
"""


def files(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.mark.slow
def test_the_dask_runner_writes_the_same_dataset(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG.format(out=tmp_path / "dask"))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        args = ["--runner", "DaskRunner", f"--dask_client_address={cluster.scheduler_address}"]
        on_dask = beam_job.run(load_config(path), args)
    here = in_process.run(load_config(path, output=str(tmp_path / "here")))
    assert files(tmp_path / "dask") == files(tmp_path / "here")
    assert on_dask["files"] == here["files"] and on_dask["tasks"] == here["tasks"]


def test_dask_runner_is_known_by_its_short_name():
    options = beam_job.default_options(["--runner", "DaskRunner"])
    assert options.get_all_options()["runner"] == beam_job.RUNNER_ALIASES["DaskRunner"]
    options = beam_job.default_options(["--runner=DaskRunner"])
    assert options.get_all_options()["runner"] == beam_job.RUNNER_ALIASES["DaskRunner"]


def test_dask_runner_without_its_extra_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "distributed" else real(name, *a),
    )
    with pytest.raises(KibbleError, match=r"pip install 'kibble\[dask\]'"):
        beam_job.default_options(["--runner", "DaskRunner"])
