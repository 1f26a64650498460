"""A real local Elasticsearch: fetched once from Maven Central, run without Docker.

The distribution is ``org.elasticsearch.distribution.integ-test-zip:elasticsearch`` (no
bundled JDK); it runs on the machine's JDK as an unprivileged user when we are root,
because Elasticsearch refuses to run as root. Each node has its own folder under
``state_dir/es/node-N`` holding ``config/``, ``data/``, ``logs/`` and ``node.pid``.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from esrag import pidfile
from esrag.errors import EsragError, ServiceUnavailable
from esrag.settings import Settings

ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"
TRANSPORT_BASE_PORT = 9300


@dataclass(frozen=True)
class NodeLayout:
    """Where one local node keeps its files."""

    root: Path
    http_port: int
    transport_port: int
    name: str

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pidfile(self) -> Path:
        return self.root / "node.pid"

    @property
    def startup_log(self) -> Path:
        return self.logs / "startup.log"


def node_layouts(settings: Settings, nodes: int | None = None) -> list[NodeLayout]:
    """The folders and ports of the local nodes (node 0 listens on es_url's port)."""
    count = nodes or settings.es_nodes
    base = settings.state_dir / "es"
    return [
        NodeLayout(
            root=base / f"node-{i}",
            http_port=settings.es_port + i,
            transport_port=TRANSPORT_BASE_PORT + (settings.es_port - 9200) + i,
            name=f"node-{i}",
        )
        for i in range(count)
    ]


def find_java_home(settings: Settings) -> Path:
    """Return a JDK 17+ home, or raise with the install command when none is found."""
    candidates: list[Path] = []
    if settings.java_home:  # ESRAG_JAVA_HOME, ES_JAVA_HOME or JAVA_HOME
        candidates.append(settings.java_home)
    java = shutil.which("java")
    if java:
        candidates.append(Path(os.path.realpath(java)).parent.parent)
    candidates.extend(sorted(Path("/usr/lib/jvm").glob("java-*-openjdk-*")))
    for home in candidates:
        if (home / "bin" / "java").exists() and _java_major(home) >= 17:
            return home
    raise EsragError(
        "Java 17 or newer was not found: install one (apt-get install openjdk-17-jre-headless) "
        "or set ESRAG_JAVA_HOME"
    )


def _java_major(home: Path) -> int:
    release = home / "release"
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                head = version.split(".")[0]
                return int(head) if head.isdigit() else 0
    try:
        out = subprocess.run(
            [str(home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    for token in out.replace('"', " ").split():
        head = token.split(".")[0]
        if head.isdigit() and token[0].isdigit():
            return int(head)
    return 0


def distribution_home(settings: Settings) -> Path:
    """Return the unpacked distribution, fetching it with Maven the first time."""
    home = settings.state_dir / "dist" / f"elasticsearch-{settings.es_version}"
    if (home / "bin" / "elasticsearch").exists():
        return home
    archive = settings.cache_dir / f"elasticsearch-{settings.es_version}.zip"
    if not archive.exists():
        _fetch_with_maven(settings, archive)
    staging = home.parent / f".unpack-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
    except zipfile.BadZipFile:
        archive.unlink(missing_ok=True)
        raise EsragError(f"cached archive {archive} was corrupt and is removed; run again") from None
    unpacked = staging / f"elasticsearch-{settings.es_version}"
    for script in (unpacked / "bin").iterdir():
        script.chmod(0o755)
    os.replace(unpacked, home)
    shutil.rmtree(staging, ignore_errors=True)
    return home


def _fetch_with_maven(settings: Settings, archive: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise EsragError(
            "Maven (mvn) is needed once to fetch Elasticsearch: apt-get install maven, "
            f"or put the distribution zip at {archive}"
        )
    archive.parent.mkdir(parents=True, exist_ok=True)
    artifact = ARTIFACT.format(version=settings.es_version)
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={artifact}",
         f"-DoutputDirectory={archive.parent}"],
        capture_output=True, text=True, timeout=1800,
    )
    if proc.returncode != 0 or not archive.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["no output"]
        raise EsragError(f"could not fetch {artifact} with Maven: {tail[0][:200]}")


def _run_as(settings: Settings) -> tuple[int, int] | None:
    """(uid, gid) of the unprivileged user to run as when we are root, created if missing."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(settings.es_user)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             settings.es_user],
            check=True, capture_output=True,
        )
        entry = pwd.getpwnam(settings.es_user)
    return entry.pw_uid, entry.pw_gid


def _chown_tree(path: Path, ids: tuple[int, int] | None) -> None:
    if ids is None:
        return
    for dirpath, dirnames, filenames in os.walk(path):
        os.chown(dirpath, *ids)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), *ids, follow_symlinks=False)


def is_bootstrapped(node: NodeLayout) -> bool:
    """True when the node's data folder already holds cluster state (it has run before)."""
    return (node.data / "_state").is_dir()


def existing_node_count(settings: Settings) -> int:
    """How many local nodes under state_dir have run before (0 for a fresh state_dir)."""
    base = settings.state_dir / "es"
    if not base.is_dir():
        return 0
    return sum(1 for root in base.glob("node-*") if (root / "data" / "_state").is_dir())


def write_node_config(
    settings: Settings,
    dist: Path,
    node: NodeLayout,
    all_nodes: list[NodeLayout],
    bootstrap: bool = True,
) -> None:
    """Write config/ for one node: elasticsearch.yml, heap options and the stock files.

    ``cluster.initial_master_nodes`` is written only when ``bootstrap`` is true (a new
    multi-node cluster): Elasticsearch wants it removed once the cluster has formed.
    """
    if not node.config.exists():
        shutil.copytree(dist / "config", node.config)
    node.data.mkdir(parents=True, exist_ok=True)
    node.logs.mkdir(parents=True, exist_ok=True)
    lines = [
        "cluster.name: esrag-local",
        f"node.name: {node.name}",
        f"path.data: {node.data}",
        f"path.logs: {node.logs}",
        "network.host: 127.0.0.1",
        f"http.port: {node.http_port}",
        f"transport.port: {node.transport_port}",
        "xpack.security.enabled: false",
        "xpack.ml.enabled: false",
        "action.destructive_requires_name: true",
        "cluster.routing.allocation.disk.threshold_enabled: true",
    ]
    if len(all_nodes) == 1:
        lines.append("discovery.type: single-node")
    else:
        seeds = ", ".join(f'"127.0.0.1:{n.transport_port}"' for n in all_nodes)
        masters = ", ".join(n.name for n in all_nodes)
        lines.append(f"discovery.seed_hosts: [{seeds}]")
        if bootstrap:
            lines.append(f"cluster.initial_master_nodes: [{masters}]")
    (node.config / "elasticsearch.yml").write_text("\n".join(lines) + "\n")
    heap = settings.es_heap
    (node.config / "jvm.options.d").mkdir(exist_ok=True)
    (node.config / "jvm.options.d" / "esrag-heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")


def read_pid(node: NodeLayout) -> int | None:
    """The pid of a running node, or None (a stale pidfile is ignored)."""
    return pidfile.read_pid(node.pidfile, b"elasticsearch")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_health(port: int, timeout: float = 2.0) -> dict | None:
    """``/_cluster/health`` of an Elasticsearch on a local port, or None."""
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/_cluster/health", timeout=timeout
        ) as resp:
            if resp.headers.get("X-Elastic-Product") != "Elasticsearch":
                return None
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def planned_node_count(settings: Settings, nodes: int | None = None) -> int:
    """Nodes `esrag up` should run: the request, else the count of an existing local cluster.

    A cluster's node count is fixed by its first start (its voting configuration names
    those nodes), so asking for another count over an existing state_dir is refused.
    """
    existing = existing_node_count(settings)
    requested = nodes or (settings.es_nodes if "es_nodes" in settings.model_fields_set else None)
    if requested is None:
        return existing or settings.es_nodes
    if existing and requested != existing:
        raise EsragError(
            f"{settings.state_dir / 'es'} holds a {existing}-node cluster; run `esrag up --nodes "
            f"{existing}` or set ESRAG_STATE_DIR to a new folder for {requested} node(s)"
        )
    return requested


def start_nodes(settings: Settings, nodes: int | None = None) -> list[str]:
    """Start the local node(s) and wait for health; return one line per node for the user.

    Several nodes are separate processes of one distribution, each with its own config,
    data and logs folder, launched together so that they can elect a master.
    """
    layouts = node_layouts(settings, planned_node_count(settings, nodes))
    java = find_java_home(settings)
    messages: list[str] = []
    to_start: list[NodeLayout] = []
    for node in layouts:
        if read_pid(node) is not None:
            messages.append(f"Elasticsearch {node.name} already running on port {node.http_port}")
        elif _port_in_use(node.http_port) or _port_in_use(node.transport_port):
            if http_health(node.http_port) is not None and len(layouts) == 1:
                messages.append(
                    f"an Elasticsearch not started by esrag answers on port {node.http_port}; using it"
                )
                continue
            raise EsragError(
                f"port {node.http_port} or {node.transport_port} is taken by another process; "
                "stop it or point ESRAG_ES_URL at another port"
            )
        else:
            to_start.append(node)
    if not to_start:
        return messages
    dist = distribution_home(settings)
    ids = _run_as(settings)
    bootstrap = not any(is_bootstrapped(n) for n in layouts)
    launches = []
    for node in to_start:
        write_node_config(settings, dist, node, layouts, bootstrap=bootstrap)
        _chown_tree(node.root, ids)
        launches.append((node, _spawn(dist, java, node, ids)))
    deadline = time.monotonic() + settings.es_start_timeout
    for node, proc in launches:
        _await_launch(settings, node, proc, deadline)
    _wait_healthy(settings, to_start, len(layouts), deadline)
    for node in to_start:
        messages.append(f"Elasticsearch {node.name} started on http://127.0.0.1:{node.http_port}")
    return messages


def _spawn(dist: Path, java: Path, node: NodeLayout, ids: tuple[int, int] | None) -> subprocess.Popen:
    """Run ``bin/elasticsearch -d`` for one node; the launcher exits once the node started."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ES_JAVA_HOME": str(java),
        "ES_PATH_CONF": str(node.config),
        "ES_TMPDIR": str(node.root / "tmp"),
        "LANG": "C.UTF-8",
    }
    (node.root / "tmp").mkdir(exist_ok=True)
    _chown_tree(node.root / "tmp", ids)
    node.pidfile.unlink(missing_ok=True)
    with open(node.startup_log, "wb") as log:
        return subprocess.Popen(
            [str(dist / "bin" / "elasticsearch"), "-d", "-p", str(node.pidfile)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=node.root, start_new_session=True,
            user=ids[0] if ids else None, group=ids[1] if ids else None,
        )


def _await_launch(settings: Settings, node: NodeLayout, proc: subprocess.Popen, deadline: float) -> None:
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise ServiceUnavailable(
            f"Elasticsearch {node.name} did not start within {settings.es_start_timeout:.0f}s; "
            f"see {node.startup_log}"
        ) from None
    if rc != 0:
        raise ServiceUnavailable(
            f"Elasticsearch {node.name} failed to start (exit {rc}); see {node.startup_log} "
            f"and {node.logs / 'esrag-local.log'}"
        )


def _wait_healthy(settings: Settings, nodes: list[NodeLayout], expected: int, deadline: float) -> None:
    for node in nodes:
        while True:
            health = http_health(node.http_port)
            if health and health.get("number_of_nodes", 0) >= expected and health.get(
                "status"
            ) in ("green", "yellow"):
                break
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"Elasticsearch {node.name} did not become healthy within "
                    f"{settings.es_start_timeout:.0f}s; see {node.logs / 'esrag-local.log'}"
                )
            if read_pid(node) is None and node.pidfile.exists():
                raise ServiceUnavailable(
                    f"Elasticsearch {node.name} exited during start-up; see "
                    f"{node.logs / 'esrag-local.log'}"
                )
            time.sleep(0.5)


def stop_node(node: NodeLayout, timeout: float = 60.0) -> bool:
    """Stop one node with SIGTERM (SIGKILL after ``timeout``); True if it was running."""
    pid = read_pid(node)
    if pid is None:
        return False
    pidfile.terminate(pid, lambda: read_pid(node) is not None, timeout, poll=0.2)
    node.pidfile.unlink(missing_ok=True)
    return True


def stop_nodes(settings: Settings, timeout: float = 60.0) -> list[str]:
    """Stop every local node esrag started (any node count); one message per node.

    All nodes get SIGTERM at once (a cluster losing its masters one by one only slows
    the last ones down), then each is waited for, and SIGKILLed after ``timeout``.
    """
    base = settings.state_dir / "es"
    roots = sorted(base.glob("node-*")) if base.exists() else []
    running = [(n, pid) for n in node_layouts(settings, max(len(roots), 1)) if (pid := read_pid(n))]
    for _, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    messages = []
    for node, pid in running:
        while read_pid(node) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if read_pid(node) is not None:
            pidfile.kill(pid)
        node.pidfile.unlink(missing_ok=True)
        messages.append(f"Elasticsearch {node.name} stopped")
    return messages or ["Elasticsearch was not running"]


def kill_node(node: NodeLayout) -> None:
    """SIGKILL one node (failure tests)."""
    pid = read_pid(node)
    if pid is not None:
        pidfile.kill(pid)
        for _ in range(100):
            if read_pid(node) is None:
                break
            time.sleep(0.1)
        node.pidfile.unlink(missing_ok=True)
