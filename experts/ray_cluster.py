"""The Ray that `kibble expert train` runs on: a local one, or a cluster it joins.

``--ray-address HOST:PORT`` (or ``auto``) joins an existing cluster; the address is
checked first, because ``ray.init`` retries an unreachable head forever. Where the
run's Ray work ran (the cluster, its nodes, the env runners' nodes) is recorded in
the expert's metadata so a run on a cluster can be told from one on a local Ray.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from kibble.errors import KibbleError

log = logging.getLogger(__name__)

# How long to wait for a Ray head's port to answer before calling it unreachable:
# ray.init itself retries an unreachable GCS forever (seen: still retrying after 5 min).
CONNECT_TIMEOUT_S = 10.0


def init_ray(address: str | None) -> None:
    """Start a local Ray, or join the cluster at ``address`` (checked first, so an
    unreachable address is a clear error, not a hang)."""
    import ray

    # Ray's own INFO and WARNING lines at start-up (local instance started, token
    # authentication, ...) are not about the expert; errors still show.
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if not address:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        return
    hostport = address.removeprefix("ray://")
    if hostport != "auto":
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise KibbleError(
                f"--ray-address {address!r} is not HOST:PORT; give the Ray head's address "
                "as `ray start --head` printed it (e.g. 10.0.0.5:6379), or auto on a machine "
                "that joined the cluster"
            )
        try:
            with socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S):
                pass
        except OSError as e:
            raise KibbleError(
                f"cannot reach a Ray cluster at --ray-address {address} ({e}); start one with "
                f"`ray start --head --port {port}` on {host} (and `ray start --address "
                f"{host}:{port}` on the other machines), check the host, port and firewall, "
                "or leave out --ray-address to train on a local Ray"
            ) from e
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise KibbleError(
            f"cannot join the Ray cluster at --ray-address {address}: {e} Run kibble on a "
            "machine that joined the cluster (`ray start --address HEAD:6379`), or leave out "
            "--ray-address to train on a local Ray"
        ) from e
    log.info("joined the Ray cluster at %s: %d node(s)", address, alive_nodes())


def alive_nodes() -> int:
    """The Ray nodes alive now."""
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive"))


def warn_if_too_few_cpus(num_env_runners: int) -> None:
    """RLlib waits, without a word, for env runners the cluster has no CPUs for."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    if num_env_runners > cpus:
        log.warning(
            "%d env runners need %d CPUs (one each) but the Ray cluster has %g: training "
            "waits until nodes with more CPUs join; lower --num-env-runners otherwise",
            num_env_runners,
            num_env_runners,
            cpus,
        )


def ray_placement(algo: Any, address: str | None, num_env_runners: int) -> dict:
    """Where this run's Ray work ran: the cluster joined, its nodes, the env runners' nodes
    (recorded so a run on a cluster can be told from one on a local Ray)."""
    import ray

    context = ray.get_runtime_context()
    runner_nodes: list[str] = []
    if num_env_runners > 0:
        runner_nodes = algo.env_runner_group.foreach_env_runner(
            lambda _runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
        )
    return {
        "address": address or "local",
        "gcs_address": context.gcs_address,
        "nodes": alive_nodes(),
        "driver_node": context.get_node_id(),
        "env_runner_nodes": list(runner_nodes),
    }
