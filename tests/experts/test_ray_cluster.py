"""RLlib experts on a real Ray cluster, and the stop rule `kibble expert train` applies.

The cluster test starts two Ray nodes on this machine with `ray start` (a head and a
node joining it, one CPU each), trains a CartPole expert through `kibble expert train
--ray-address HEAD --num-env-runners 2` in a separate driver process (as a user would),
and checks the env runners ran on both nodes of that cluster and the checkpoint meets
its target. The nodes are started in their own sessions and torn down by session id, so
no other Ray on the machine is touched.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kibble.errors import KibbleError
from kibble.experts.rllib_train import (
    ExpertTrainConfig,
    IterationReport,
    stop_rule_met,
    train_expert,
    training_finished,
)

BIN = Path(sys.executable).parent
TARGET = 150.0  # CartPole mean return; a modest target keeps the test near a minute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kibble(*args: str, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "kibble"), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _session_pids(sid: int) -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, s in (line.split() for line in ps.splitlines()) if int(s) == sid]


def _end_sessions(sids: list[int]) -> None:
    """End every process of the sessions `ray start` ran in (GCS, raylets, agents, workers),
    TERM first, then KILL: `ray stop` would end every Ray on the machine, not just ours."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in (pid for sid in sids for pid in _session_pids(sid)):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while any(_session_pids(sid) for sid in sids) and time.monotonic() < deadline:
            time.sleep(0.2)


@dataclass
class Cluster:
    address: str
    port: int
    node_ids: set[str]
    env: dict[str, str]
    """The environment of every process of the cluster: its auth token."""


def _ray_start(args: list[str], sessions: list[int], env: dict[str, str]) -> None:
    """`ray start ARGS` in a new session (recorded for teardown); fails the test if it fails."""
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--disable-usage-stats", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=env,
    )
    sessions.append(proc.pid)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out


def _alive_nodes(address: str, env: dict[str, str]) -> list[str]:
    """The alive node ids, asked from a separate driver (this process stays Ray-free)."""
    code = (
        "import json, logging, ray; "
        f"ray.init(address={address!r}, logging_level=logging.ERROR, log_to_driver=False); "
        "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # A short temp dir: Ray's unix socket paths live under it (107-character limit).
    temp_dir = tempfile.mkdtemp(prefix="kray", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--object-store-memory=100000000"]
    # Token authentication, as Ray sets up by default, with a token of the test's own:
    # whether Ray turns it on otherwise depends on ~/.ray/auth_token, which a local
    # ray.init() on this machine may have written, and a node without the head's token
    # cannot join.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    sessions: list[int] = []
    try:
        _ray_start(
            [
                "--head",
                f"--port={port}",
                f"--temp-dir={temp_dir}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            sessions,
            env,
        )
        _ray_start(
            [f"--address={address}", f"--dashboard-agent-listen-port={free_port()}", *common],
            sessions,
            env,
        )
        deadline = time.monotonic() + 60
        while len(nodes := _alive_nodes(address, env)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(nodes) == 2, f"the second node did not join: {nodes}"
        yield Cluster(address, port, set(nodes), env)
    finally:
        _end_sessions(sessions)
        shutil.rmtree(temp_dir, ignore_errors=True)
    for sid in sessions:
        assert not _session_pids(sid), f"Ray processes of session {sid} outlived the test"


@pytest.mark.slow
def test_expert_trains_with_env_runners_on_a_two_node_cluster(cluster, tmp_path):
    out = tmp_path / "cartpole"
    started = time.monotonic()
    done = kibble(
        "expert", "train", "gym/CartPole-v1", "--out", str(out),
        "--ray-address", cluster.address, "--num-env-runners", "2",
        "--target-return", str(TARGET), "--timesteps", "200000", "--max-minutes", "2",
        env=cluster.env,
    )  # fmt: skip
    train_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "kibble_expert.json").read_text())
    assert meta["config"]["num_env_runners"] == 2
    ray_info = meta["ray"]
    # The driver joined this cluster (not a Ray of its own) and saw both nodes ...
    assert ray_info["address"] == cluster.address
    assert ray_info["gcs_address"].endswith(f":{cluster.port}")
    assert ray_info["nodes"] == 2 and ray_info["driver_node"] in cluster.node_ids
    # ... and its two env runners (one CPU each, one CPU per node) ran one on each node.
    assert sorted(ray_info["env_runner_nodes"]) == sorted(cluster.node_ids)
    progress = meta["progress"]
    assert progress["return_mean"] >= TARGET, progress

    # The checkpoint loads without the cluster and its greedy policy meets the target.
    card_path = tmp_path / "card.json"
    evaluated = kibble(
        "expert", "eval", "gym/CartPole-v1", "--expert", str(out),
        "--episodes", "10", "--out", str(card_path),
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    card = json.loads(card_path.read_text())
    assert card["expert_return"]["mean"] >= TARGET, card["expert_return"]
    assert training_finished(out, ExpertTrainConfig("gym/CartPole-v1", out, target_return=TARGET))
    print(
        f"\ncluster training: {train_s:.0f} s to {progress['env_steps']:,} env steps, "
        f"mean training return {progress['return_mean']:.1f} (iteration "
        f"{progress['iteration']}, {progress['seconds']:.0f} s of training); greedy eval "
        f"over 10 episodes {card['expert_return']['mean']:.1f}"
    )


def test_an_unreachable_ray_address_is_a_one_paragraph_error(tmp_path):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    done = kibble(
        "expert", "train", "gym/CartPole-v1", "--out", str(tmp_path / "x"),
        "--ray-address", address, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot reach a Ray cluster at --ray-address {address}" in done.stderr
    assert "ray start --head" in done.stderr
    assert time.monotonic() - started < 60  # Ray alone would retry for ever


@pytest.mark.parametrize("address", ["headnode", "headnode:port", ":6379"])
def test_a_malformed_ray_address_is_named(tmp_path, address):
    cfg = ExpertTrainConfig("gym/CartPole-v1", tmp_path / "x", ray_address=address)
    with pytest.raises(KibbleError, match=f"--ray-address '{address}' is not HOST:PORT"):
        train_expert(cfg)


# --- the stop rule, on hand-written expert directories (no training) ---------------------


def _expert_dir(tmp_path: Path, progress: dict | None, task="gym/CartPole-v1", ckpt=True) -> Path:
    out = tmp_path / "expert"
    out.mkdir()
    if ckpt:
        (out / "checkpoint").mkdir()
    meta = {"task": task, "algorithm": "PPO", "progress": progress}
    (out / "kibble_expert.json").write_text(json.dumps(meta))
    return out


def _progress(env_steps=40_000, return_mean=180.0, seconds=30.0) -> dict:
    return {"iteration": 10, "env_steps": env_steps, "return_mean": return_mean,
            "seconds": seconds}  # fmt: skip


@pytest.mark.parametrize(
    ("progress", "settings", "finished"),
    [
        (_progress(return_mean=180.0), {"target_return": 150.0}, True),
        (_progress(return_mean=149.9), {"target_return": 150.0}, False),
        (_progress(return_mean=None), {"target_return": 150.0}, False),
        (_progress(return_mean=None, env_steps=200_000), {"target_return": 150.0}, True),
        (_progress(env_steps=99_999), {"timesteps": 100_000}, False),
        (_progress(env_steps=100_000), {"timesteps": 100_000}, True),
        (_progress(seconds=119.0), {"max_minutes": 2.0}, False),
        (_progress(seconds=120.0), {"max_minutes": 2.0}, True),
        (_progress(seconds=120.0), {"max_minutes": None}, False),
    ],
)
def test_training_finished_applies_the_stop_rule(tmp_path, progress, settings, finished):
    cfg = ExpertTrainConfig("gym/CartPole-v1", tmp_path / "expert", **settings)
    out = _expert_dir(tmp_path, progress)
    assert training_finished(out, cfg) is finished
    # The very rule train_expert stops on, for the same figures.
    assert stop_rule_met(IterationReport(**progress), cfg) is finished


@pytest.mark.parametrize("case", ["no_directory", "no_progress", "no_checkpoint", "other_task"])
def test_training_is_not_finished_without_a_finished_expert(tmp_path, case):
    cfg = ExpertTrainConfig("gym/CartPole-v1", tmp_path / "expert", target_return=10.0)
    if case == "no_directory":
        out = tmp_path / "expert"
    elif case == "no_progress":
        out = _expert_dir(tmp_path, None)
    elif case == "no_checkpoint":
        out = _expert_dir(tmp_path, _progress(), ckpt=False)
    else:
        out = _expert_dir(tmp_path, _progress(), task="gym/Acrobot-v1")
    assert training_finished(out, cfg) is False
