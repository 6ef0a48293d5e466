"""A real Kubernetes control plane on loopback, with kwok nodes, for end-to-end tests.

The bed runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok as
host processes built by ``e2e/tools/build.sh``. Everything listens on 127.0.0.1 on free
ports (with the real node, the API server's port is also relayed on the node's own
address, for pods). Only the standard library is used, so ``make cluster-up`` needs no
virtualenv.

Layout:

* the *state directory* (``$ROOMCAST_BED_DIR``, default
  ``${XDG_RUNTIME_DIR:-/tmp}/roomcast-bed``) holds ``kubeconfig`` (cluster-admin) and
  ``bed.json``, which records the run directory, the ports and every process started
  (pid plus kernel start time, so a recycled pid is never signalled);
* the *run directory* (a fresh temporary directory per start) holds the PKI, etcd's
  data and one log file per component under ``logs/``.

``down`` stops exactly the processes recorded in ``bed.json`` and then checks that no
process still refers to the run directory.

With a real node (:mod:`e2e.node`; on by default where the host can run it, see
``ROOMCAST_REAL_NODE``) the bed also runs containerd, kubelet and kube-proxy, and ``down``
first evacuates that node's pods, then removes every trace it left on the host.

Command line: ``python3 -m e2e.bed up|down|status|logs``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from e2e import node as real_node

T = TypeVar("T")

E2E_DIR = Path(__file__).resolve().parent
BUILD_SCRIPT = E2E_DIR / "tools" / "build.sh"
STAGES_FILE = E2E_DIR / "bed" / "kwok-stages.yaml"

FAIL_ANNOTATION = "roomcast.io/kwok-fail"
"""Pods whose template carries this annotation set to "true" never become Ready."""

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_LABEL = "roomcast.io/bed-node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
RELAY = "apiserver-relay"
"""With the real node: the API server's port on the node's address, for pods (``e2e/relay.py``)."""
NODE_COMPONENTS = (*real_node.COMPONENTS, RELAY)
STOP_GRACE_SECONDS = 10.0


class BedError(RuntimeError):
    """The bed could not be started, reached or stopped."""


def default_state_dir() -> Path:
    explicit = os.environ.get("ROOMCAST_BED_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "roomcast-bed"


def eventually(
    probe: Callable[[], T | None],
    timeout_seconds: float,
    *,
    interval_seconds: float = 0.2,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something other than None or False.

    Exceptions raised by the probe count as "not yet"; the last one is chained to the
    TimeoutError raised when ``timeout_seconds`` pass, so a failure says why.
    """
    deadline = time.monotonic() + timeout_seconds
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = probe()
        except Exception as error:
            last_error = error
        else:
            if value is not None and value is not False:
                return value
            last_value = value
        if time.monotonic() >= deadline:
            detail = f"last error: {last_error!r}" if last_error else f"last value: {last_value!r}"
            raise TimeoutError(
                f"{what} not met within {timeout_seconds:.0f}s ({detail})"
            ) from last_error
        time.sleep(interval_seconds)


def tools_bin_dir() -> Path:
    """Return the directory holding the pinned tool set, building it if needed."""
    explicit = os.environ.get("ROOMCAST_TOOLS_BIN")
    if explicit:
        return Path(explicit)
    result = subprocess.run(
        [str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True, stderr=None
    )
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- processes ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRecord:
    """One process the bed started: enough to find it again, and only it."""

    name: str
    pid: int
    start_ticks: int
    log: str

    def alive(self) -> bool:
        stat = _proc_stat(self.pid)
        return stat is not None and stat[1] != "Z" and stat[2] == self.start_ticks


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, start time in clock ticks) of a pid, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return comm, rest[0], int(rest[19])


def proc_start_ticks(pid: int) -> int:
    """When the process started, in clock ticks since boot (0 if it is gone)."""
    stat = _proc_stat(pid)
    return stat[2] if stat else 0


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text`` (pid, command line)."""
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        stat = _proc_stat(int(entry.name))
        if text in cmdline and stat is not None and stat[1] != "Z":
            found.append((int(entry.name), cmdline.strip()))
    return found


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Components started by this interpreter, kept so they can be reaped when they stop."""


def _reap(pid: int) -> None:
    """Collect the exit status if the pid is our child, so it does not linger as a zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(record: ProcessRecord, grace_seconds: float = STOP_GRACE_SECONDS) -> bool:
    """Stop one recorded process group: SIGTERM, then SIGKILL after the grace period.

    Returns True if the process had to be killed.
    """
    if not record.alive():
        _reap(record.pid)
        return False
    # Each component runs in its own session, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive():
            return False
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)

    def gone() -> bool:
        _reap(record.pid)
        return not record.alive()

    eventually(gone, 5, what=f"{record.name} (pid {record.pid}) to die after SIGKILL")
    return True


# --- state ----------------------------------------------------------------------------


@dataclass
class BedState:
    """What ``bed.json`` records about a running bed."""

    run_dir: str
    tools_bin: str
    ports: dict[str, int]
    processes: list[ProcessRecord] = field(default_factory=list)
    node: dict[str, Any] | None = None
    """The real node: its directory (``root``) and the host ``snapshot`` taken before it."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "run_dir": self.run_dir,
                "tools_bin": self.tools_bin,
                "ports": self.ports,
                "processes": [vars(p) for p in self.processes],
                "node": self.node,
            },
            indent=2,
        )

    def components(self) -> set[str]:
        """The components this bed runs."""
        return set(COMPONENTS) | (set(NODE_COMPONENTS) if self.node else set())

    @classmethod
    def from_json(cls, text: str) -> BedState:
        data = json.loads(text)
        return cls(
            run_dir=data["run_dir"],
            tools_bin=data["tools_bin"],
            ports={k: int(v) for k, v in data["ports"].items()},
            processes=[ProcessRecord(**p) for p in data["processes"]],
            node=data.get("node"),
        )


# --- a small API client for readiness checks -------------------------------------------


class ApiError(BedError):
    """The API server answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


def _fetch(request: urllib.request.Request | str, context: ssl.SSLContext) -> tuple[int, bytes]:
    """(status, body) of one HTTP request; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


class ApiClient:
    """Just enough of the Kubernetes REST API to bring the bed up and check it."""

    def __init__(self, server: str, token: str, ca_file: Path) -> None:
        self.server = server
        self._token = token
        self._context = ssl.create_default_context(cafile=str(ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        status, payload = _fetch(request, self._context)
        if status >= 400:
            raise ApiError(status, payload.decode(errors="replace"))
        try:
            return json.loads(payload)
        except ValueError:
            return payload.decode()

    def healthy(self, path: str = "/readyz") -> bool:
        try:
            return bool(self.request("GET", path) == "ok")
        except (OSError, BedError):
            return False


def _http_ok(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return _fetch(url, context)[0] == 200
    except OSError:
        return False


# --- the bed --------------------------------------------------------------------------


class Bed:
    """One test bed instance, identified by its state directory."""

    def __init__(
        self, state_dir: Path | None = None, nodes: int = 3, real: bool | None = None
    ) -> None:
        """``real``: run the real node (True requires it, None runs it where possible,
        False never); by default ``ROOMCAST_REAL_NODE`` decides."""
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.nodes = nodes
        self.real = real_node.requested() if real is None else real

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "bed.json"

    def state(self) -> BedState | None:
        try:
            return BedState.from_json(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def _save(self, state: BedState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.state_file)

    def log_files(self) -> dict[str, Path]:
        state = self.state()
        if state is None:
            return {}
        return {p.name: Path(p.log) for p in state.processes}

    def running(self) -> bool:
        """True if every component recorded is alive and the API server is ready."""
        state = self.state()
        if state is None or not state.processes:
            return False
        names = {p.name for p in state.processes}
        if names != state.components() or not all(p.alive() for p in state.processes):
            return False
        try:
            return self.client(state).healthy()
        except OSError:
            return False

    def client(self, state: BedState) -> ApiClient:
        run = Path(state.run_dir)
        token = (run / "pki" / "admin.token").read_text().strip()
        server = f"https://127.0.0.1:{state.ports['apiserver']}"
        return ApiClient(server, token, run / "pki" / "ca.crt")

    # -- up --

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise up and down of this state directory across processes."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, timeout_seconds: float = 120.0) -> None:
        """Start the bed, or keep it if it is already running."""
        with self._exclusive():
            if self.running():
                return
            self._down()
            tools = tools_bin_dir()
            for binary in (*COMPONENTS, "kubectl"):
                if not (tools / binary).is_file():
                    raise BedError(f"{binary} missing from {tools}: run e2e/tools/build.sh")
            with_node = self._want_real_node(tools)
            try:
                self._up(tools, timeout_seconds, with_node)
            except BedError as error:
                # Ports are picked free but only bound later; on a busy machine another
                # process can take one in between. One retry, on fresh ports.
                sys.stderr.write(f"roomcast bed: start failed ({error}); retrying once\n")
                self._up(tools, timeout_seconds, with_node)

    def _want_real_node(self, tools: Path) -> bool:
        if self.real is False:
            return False
        reason = real_node.unavailable_reason(tools)
        if reason is None:
            return True
        if self.real:
            raise BedError(f"ROOMCAST_REAL_NODE=1 but {reason}")
        sys.stderr.write(f"roomcast bed: no real node ({reason}); kwok nodes only\n")
        return False

    def _up(self, tools: Path, timeout_seconds: float, with_node: bool) -> None:
        run = Path(tempfile.mkdtemp(prefix="roomcast-bed-"))
        names = ["etcd", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok"]
        if with_node:
            names += ["kubelet", "kubelet_healthz", "proxy_healthz", "proxy_metrics"]
        ports = {name: free_port() for name in names}
        state = BedState(run_dir=str(run), tools_bin=str(tools), ports=ports)
        self._save(state)
        try:
            self._start_all(state, tools, run, timeout_seconds, with_node)
            if with_node:
                self._start_node(state, tools, run, timeout_seconds)
        except BaseException:
            sys.stderr.write(self.log_tails() + "\n")
            self._down()
            raise

    def _start_all(
        self, state: BedState, tools: Path, run: Path, timeout_seconds: float, with_node: bool
    ) -> None:
        deadline = time.monotonic() + timeout_seconds

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        (run / "logs").mkdir()
        (run / AUDIT_LOG).parent.mkdir()
        pki = run / "pki"
        pki.mkdir(mode=0o700)
        tokens = _make_pki(pki)
        (pki / "audit-policy.yaml").write_text(AUDIT_POLICY)
        ports = state.ports
        server = f"https://127.0.0.1:{ports['apiserver']}"
        for user in ("controller-manager", "scheduler", "kwok"):
            _write_kubeconfig(pki / f"{user}.kubeconfig", server, pki / "ca.crt", tokens[user])

        etcd_url = f"http://127.0.0.1:{ports['etcd']}"
        peer_url = f"http://127.0.0.1:{ports['etcd_peer']}"
        self._spawn(
            state,
            "etcd",
            [
                str(tools / "etcd"),
                "--name=bed",
                f"--data-dir={run / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=bed={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        eventually(
            lambda: self._alive_or_raise(state, "etcd") and _http_ok(f"{etcd_url}/health"),
            remaining(),
            what="etcd healthy",
        )

        # With the real node, the API server advertises the node's address: the lease
        # endpoint reconciler then points the `kubernetes` Service there, where the relay
        # (started with the node) listens, so pods reach the API server through the
        # Service. Without it nothing off the host needs the Service, and an endpoint on
        # loopback is invalid, so there is none.
        advertise, reconciler = (real_node.NODE_IP, "lease") if with_node else ("127.0.0.1", "none")
        self._spawn(
            state,
            "kube-apiserver",
            [
                str(tools / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--advertise-address={advertise}",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy.key'}",
                f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'kubelet-client.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--endpoint-reconciler-type={reconciler}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={pki / 'audit-policy.yaml'}",
                f"--audit-log-path={run / AUDIT_LOG}",
                "--audit-log-format=json",
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
            ],
        )
        api = self.client(state)
        eventually(
            lambda: self._alive_or_raise(state, "kube-apiserver") and api.healthy(),
            remaining(),
            what="kube-apiserver ready",
        )

        for name, port_key in (
            ("kube-controller-manager", "controller_manager"),
            ("kube-scheduler", "scheduler"),
        ):
            short = name.removeprefix("kube-")
            kubeconfig = pki / f"{short}.kubeconfig"
            argv = [
                str(tools / name),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={ports[port_key]}",
                "--leader-elect=false",
            ]
            if name == "kube-controller-manager":
                argv += [
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                ]
            self._spawn(state, name, argv)

        self._spawn(
            state,
            "kwok",
            [
                str(tools / "kwok"),
                f"--kubeconfig={pki / 'kwok.kubeconfig'}",
                f"--config={STAGES_FILE}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{ports['kwok']}",
                f"--node-port={ports['kwok']}",
                "--node-ip=127.0.0.1",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
            ],
        )
        for name, url in (
            ("kube-controller-manager", f"https://127.0.0.1:{ports['controller_manager']}"),
            ("kube-scheduler", f"https://127.0.0.1:{ports['scheduler']}"),
            ("kwok", f"http://127.0.0.1:{ports['kwok']}"),
        ):
            eventually(
                lambda name=name, url=url: (  # type: ignore[misc]
                    self._alive_or_raise(state, name) and _http_ok(f"{url}/healthz")
                ),
                remaining(),
                what=f"{name} healthy",
            )

        for index in range(self.nodes):
            api.request("POST", "/api/v1/nodes", _fake_node(f"kwok-node-{index}"))
        eventually(lambda: self._nodes_ready(api), remaining(), what="kwok nodes Ready")
        eventually(
            lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default"),
            remaining(),
            what="default ServiceAccount",
        )
        _write_kubeconfig(self.kubeconfig, server, pki / "ca.crt", tokens["admin"])

    def _start_node(self, state: BedState, tools: Path, run: Path, timeout_seconds: float) -> None:
        """containerd, kubelet and kube-proxy on this host, registered as the real node."""
        deadline = time.monotonic() + timeout_seconds

        def remaining() -> float:
            return max(1.0, deadline - time.monotonic())

        pki = run / "pki"
        layout = real_node.NodeLayout(run / "node")
        layout.root.mkdir()
        snapshot = real_node.HostSnapshot.take()
        state.node = {"root": str(layout.root), "snapshot": snapshot.to_dict()}
        self._save(state)
        try:
            real_node.claim_host(self.state_file)
            real_node.prepare_host()
        except real_node.NodeError as error:
            raise BedError(str(error)) from error
        self._start_relay(state, remaining())
        server = f"https://127.0.0.1:{state.ports['apiserver']}"
        kubeconfigs = {}
        for user in ("node", "kube-proxy"):
            kubeconfigs[user] = pki / f"{user}.kubeconfig"
            token = (pki / f"{user}.token").read_text().strip()
            _write_kubeconfig(kubeconfigs[user], server, pki / "ca.crt", token)
        argv = real_node.write_configs(
            layout,
            tools,
            ca_file=pki / "ca.crt",
            kubelet_kubeconfig=kubeconfigs["node"],
            proxy_kubeconfig=kubeconfigs["kube-proxy"],
            ports=state.ports,
        )
        self._spawn(state, "containerd", argv["containerd"])
        eventually(
            lambda: (
                self._alive_or_raise(state, "containerd")
                and real_node.ctr(layout, "version", check=False).count("Version") == 2
            ),
            remaining(),
            what="containerd serving",
        )
        real_node.import_pause_image(layout, tools)
        self._spawn(state, "kubelet", argv["kubelet"])
        self._spawn(state, "kube-proxy", argv["kube-proxy"])
        api = self.client(state)
        eventually(
            lambda: (
                self._alive_or_raise(state, "kubelet")
                and self._alive_or_raise(state, "kube-proxy")
                and _node_ready(api.request("GET", f"/api/v1/nodes/{real_node.NODE_NAME}"))
            ),
            remaining(),
            what="real node Ready",
        )
        eventually(
            lambda: _http_ok(f"http://127.0.0.1:{state.ports['proxy_healthz']}/healthz"),
            remaining(),
            what="kube-proxy healthy",
        )

    def _start_relay(self, state: BedState, timeout_seconds: float) -> None:
        """The API server's port on the node's address, relayed to 127.0.0.1: the
        `kubernetes` Service's endpoint, so pods with a service-account token reach it."""
        port = state.ports["apiserver"]
        # -I: isolated, so the script's directory (e2e/, with its own `operator` package)
        # does not shadow the standard library.
        relay = [sys.executable, "-I", str(E2E_DIR / "relay.py")]
        self._spawn(state, RELAY, [*relay, f"{real_node.NODE_IP}:{port}", f"127.0.0.1:{port}"])
        eventually(
            lambda: self._alive_or_raise(state, RELAY) and _tcp_open(real_node.NODE_IP, port),
            timeout_seconds,
            what="API server relay on the node address",
        )

    def _spawn(self, state: BedState, name: str, argv: list[str]) -> None:
        log = Path(state.run_dir) / "logs" / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "ETCDCTL_API")}
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=state.run_dir,
                env=env,
                start_new_session=True,
            )
        _CHILDREN[process.pid] = process
        ticks = proc_start_ticks(process.pid)
        state.processes.append(ProcessRecord(name, process.pid, ticks, str(log)))
        self._save(state)

    def _alive_or_raise(self, state: BedState, name: str) -> bool:
        record = next(p for p in state.processes if p.name == name)
        if not record.alive():
            _reap(record.pid)
            raise BedError(f"{name} exited; log:\n{_tail(Path(record.log), 30)}")
        return True

    def _nodes_ready(self, api: ApiClient) -> bool:
        nodes = api.request("GET", f"/api/v1/nodes?labelSelector={NODE_LABEL}%3Dkwok")["items"]
        return len([n for n in nodes if _node_ready(n)]) >= self.nodes

    def _evacuate_node(self, state: BedState) -> None:
        """Cordon the real node and delete its pods, so the kubelet stops every container
        and the CNI plugins release every address before the node's processes stop."""
        api = self.client(state)
        name = real_node.NODE_NAME
        pods_path = f"/api/v1/pods?fieldSelector=spec.nodeName%3D{name}"
        with contextlib.suppress(OSError, BedError):
            api.request(
                "PATCH",
                f"/api/v1/nodes/{name}",
                {"spec": {"unschedulable": True}},
                content_type="application/merge-patch+json",
            )
            for pod in api.request("GET", pods_path)["items"]:
                meta = pod["metadata"]
                with contextlib.suppress(ApiError):
                    api.request(
                        "DELETE",
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                        {"gracePeriodSeconds": 1},
                    )
            eventually(
                lambda: not api.request("GET", pods_path)["items"], 60, what="real node evacuated"
            )

    # -- down --

    def down(self, keep_logs: bool | None = None) -> list[str]:
        """Stop every recorded process and remove the run directory.

        Returns the names of components that ignored SIGTERM and had to be killed.
        Raises BedError if any process still refers to the run directory afterwards.
        """
        if not self.state_file.exists():
            return []
        with self._exclusive():
            return self._down(keep_logs)

    def _down(self, keep_logs: bool | None = None) -> list[str]:
        state = self.state()
        if state is None:
            return []
        if keep_logs is None:
            keep_logs = os.environ.get("ROOMCAST_BED_KEEP_LOGS") == "1"
        node_alive = state.node is not None and any(
            p.alive() for p in state.processes if p.name == "kubelet"
        )
        if node_alive:
            with contextlib.suppress(TimeoutError):
                self._evacuate_node(state)
        killed = [p.name for p in reversed(state.processes) if stop_process(p)]
        node_left: list[str] = []
        if state.node is not None:
            layout = real_node.NodeLayout(Path(state.node["root"]))
            snapshot = real_node.HostSnapshot.from_dict(state.node["snapshot"])
            real_node.sweep(layout, snapshot)
            node_left = real_node.leftovers(layout, snapshot)
            real_node.release_host(self.state_file)
        strays = processes_mentioning(state.run_dir)
        for pid, _ in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run = Path(state.run_dir)
        if keep_logs:
            for child in run.iterdir():
                if child.name != "logs":
                    shutil.rmtree(child, ignore_errors=True)
        else:
            shutil.rmtree(run, ignore_errors=True)
        self.kubeconfig.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)
        if strays:
            raise BedError(f"processes outside bed.json used the bed: {strays}")
        if node_left:
            raise BedError(f"the real node left traces on the host: {node_left}")
        return killed

    # -- logs --

    def log_tails(self, lines: int = 25) -> str:
        """The last lines of every component log, for failure reports."""
        parts = []
        for name, path in self.log_files().items():
            parts.append(f"----- {name} ({path}) -----\n{_tail(path, lines)}")
        return "\n".join(parts)


AUDIT_LOG = "audit/audit.log"
"""Under the run directory: every write a ServiceAccount makes (see ``e2e.audit``)."""
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
"""


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _node_ready(node: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(
        line if len(line) <= 400 else line[:400] + " [...]" for line in text.splitlines()[-lines:]
    )


def _fake_node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                NODE_LABEL: "kwok",
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_pki(pki: Path) -> dict[str, str]:
    """A CA, serving and front-proxy certificates, a service-account key pair and tokens.

    Clients authenticate with static bearer tokens (``--token-auth-file``); the users
    are the ones the default RBAC bindings already know.
    """
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"),
        "-days", "3650", "-subj", "/CN=roomcast-bed-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", str(pki / "apiserver.key"), "-out", str(pki / "apiserver.csr"),
        "-subj", "/CN=kube-apiserver",
    )  # fmt: skip
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.96.0.1",
            f"IP:{real_node.NODE_IP}",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    (pki / "apiserver.ext").write_text(
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "x509", "-req", "-in", str(pki / "apiserver.csr"), "-CA", str(pki / "ca.crt"),
        "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650",
        "-extfile", str(pki / "apiserver.ext"), "-out", str(pki / "apiserver.crt"),
    )  # fmt: skip
    # Front-proxy client: lets the API server authenticate to aggregated API servers and
    # gives the requestheader CA to every component that delegates authentication.
    _openssl(
        "req", *ec, "-keyout", str(pki / "front-proxy.key"), "-out", str(pki / "front-proxy.csr"),
        "-subj", "/CN=front-proxy-client",
    )  # fmt: skip
    (pki / "front-proxy.ext").write_text(
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "x509", "-req", "-in", str(pki / "front-proxy.csr"), "-CA", str(pki / "ca.crt"),
        "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650",
        "-extfile", str(pki / "front-proxy.ext"), "-out", str(pki / "front-proxy.crt"),
    )  # fmt: skip
    # The API server's client certificate towards kubelets (logs, exec, port-forward).
    _openssl(
        "req", *ec, "-keyout", str(pki / "kubelet-client.key"),
        "-out", str(pki / "kubelet-client.csr"),
        "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(pki / "kubelet-client.csr"), "-CA", str(pki / "ca.crt"),
        "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "3650",
        "-extfile", str(pki / "front-proxy.ext"), "-out", str(pki / "kubelet-client.crt"),
    )  # fmt: skip
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-out", str(pki / "sa.key"),
    )  # fmt: skip
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))

    users = {
        "admin": ("roomcast-bed-admin", "system:masters"),
        "controller-manager": ("system:kube-controller-manager", ""),
        "scheduler": ("system:kube-scheduler", ""),
        "kwok": ("roomcast-bed-kwok", "system:masters"),
        # The real node: NodeRestriction knows a kubelet by exactly this name and group.
        "node": (f"system:node:{real_node.NODE_NAME}", "system:nodes"),
        "kube-proxy": ("system:kube-proxy", ""),
    }
    tokens = {key: secrets.token_hex(24) for key in users}
    lines = [
        f'{tokens[key]},{user},{user},"{groups}"' if groups else f"{tokens[key]},{user},{user}"
        for key, (user, groups) in users.items()
    ]
    (pki / "tokens.csv").write_text("\n".join(lines) + "\n")
    for key in ("admin", "node", "kube-proxy"):
        (pki / f"{key}.token").write_text(tokens[key] + "\n")
    for path in pki.iterdir():
        path.chmod(0o600)
    return tokens


def _write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    """Write a self-contained kubeconfig (JSON is valid YAML)."""
    import base64

    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "roomcast-bed",
                "cluster": {"server": server, "certificate-authority-data": ca_data},
            }
        ],
        "users": [{"name": "roomcast-bed", "user": {"token": token}}],
        "contexts": [
            {"name": "roomcast-bed", "context": {"cluster": "roomcast-bed", "user": "roomcast-bed"}}
        ],
        "current-context": "roomcast-bed",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with _umask(0o077):
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- command line ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m e2e.bed", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "logs"))
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--keep-logs", action="store_true", help="down: keep the log files")
    parser.add_argument(
        "--real-node",
        choices=("auto", "on", "off"),
        default=None,
        help="up: run the real node (default: ROOMCAST_REAL_NODE, else where possible)",
    )
    args = parser.parse_args(argv)
    real = {"on": True, "off": False}.get(args.real_node or "")
    bed = Bed(args.state_dir, nodes=args.nodes, real=real)

    if args.command == "up":
        started = time.monotonic()
        already = bed.running()
        try:
            bed.up()
        except (BedError, TimeoutError, subprocess.CalledProcessError) as error:
            print(f"cluster-up failed: {error}", file=sys.stderr)
            return 1
        state = bed.state()
        assert state is not None
        verb = "already running" if already else f"up in {time.monotonic() - started:.1f}s"
        nodes = f"{bed.nodes} kwok nodes" + (
            f" and the real node {real_node.NODE_NAME}" if state.node else ""
        )
        print(f"roomcast bed {verb} ({nodes}): logs in {Path(state.run_dir) / 'logs'}")
        print(f"export KUBECONFIG={bed.kubeconfig}")
        return 0
    if args.command == "down":
        state = bed.state()
        try:
            killed = bed.down(keep_logs=args.keep_logs or None)
        except BedError as error:
            print(f"cluster-down: {error}", file=sys.stderr)
            return 1
        if state is None:
            print("roomcast bed: nothing to stop")
        else:
            detail = (
                f" (killed after {STOP_GRACE_SECONDS:.0f}s: {', '.join(killed)})" if killed else ""
            )
            print(f"roomcast bed stopped: {len(state.processes)} processes{detail}")
        return 0
    if args.command == "status":
        state = bed.state()
        if state is None:
            print("roomcast bed: not running")
            return 1
        for record in state.processes:
            print(f"{record.name:<24} pid {record.pid:<8} {'up' if record.alive() else 'DOWN'}")
        print(f"export KUBECONFIG={bed.kubeconfig}")
        return 0 if bed.running() else 1
    print(bed.log_tails())
    return 0


if __name__ == "__main__":
    sys.exit(main())
