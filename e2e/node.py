"""A real node for the bed: containerd, kubelet and kube-proxy running on this host.

Next to the kwok nodes, which only simulate pods, this node runs them: images are
unpacked by containerd (Debian's), containers started by runc, pods wired by the bridge
and host-local CNI plugins, Services programmed by kube-proxy in iptables mode, probes,
preStop hooks and grace periods carried out by the kubelet. The kubelet and kube-proxy
are built from source at the bed's Kubernetes version.

Everything the node changes on the host is named here and undone by :func:`sweep`:

* processes: containerd (and its shims and containers), kubelet, kube-proxy;
* files and mounts: all under ``<run dir>/node`` (containerd root and state, runc state,
  kubelet root, pod logs, CNI configuration and IP allocations), plus the network
  namespaces the CRI makes under ``/run/netns``;
* network devices: the node's address device ``rcnode0`` and the pod bridge ``rcbr0``
  with its veths;
* iptables chains (IPv4 and IPv6) made by kube-proxy, the kubelet and the CNI plugins;
* the ``kubepods`` cgroups and the sysctls the kubelet and the plugins set.

:class:`HostSnapshot` records what existed before, so the sweep removes only what the
node added. One real node runs per host at a time (``/run/roomcast-node.lock``).

The node is tainted ``roomcast.io/real-node=true:NoSchedule``: only pods that tolerate
it (and select ``roomcast.io/bed-node=real``) run here; everything else keeps going to
the kwok nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from e2e.oci import File, image_archive

NODE_NAME = "roomcast-node"
NODE_DEVICE = "rcnode0"
NODE_IP = "10.255.0.1"
"""The node's InternalIP, on a device of its own, so nothing binds to eth0."""
BRIDGE = "rcbr0"
POD_SUBNET = "10.245.0.0/24"
PAUSE_REPOSITORY = "roomcast.local/pause"
TAINT_KEY = "roomcast.io/real-node"
NODE_LABELS = {"roomcast.io/bed-node": "real", "type": "real"}
"""What pods select to run here (the kwok nodes carry ``roomcast.io/bed-node=kwok``)."""
COMPONENTS = ("containerd", "kubelet", "kube-proxy")
HOST_LOCK = Path("/run/roomcast-node.lock")
NETNS_DIR = Path("/run/netns")
SHIM_SOCKET_DIR = Path("/run/containerd/s")
CNI_BIN_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
HOST_PROGRAMS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Set by the kubelet (setupKernelTunables), the bridge plugin and kube-proxy; put back.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "net/ipv4/conf/all/route_localnet",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


class NodeError(RuntimeError):
    """The real node cannot run on this host, or could not be started."""


def requested() -> bool | None:
    """``ROOMCAST_REAL_NODE``: "1" requires the node, "0" turns it off, unset: where possible."""
    value = os.environ.get("ROOMCAST_REAL_NODE", "").strip()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    return None


def cni_bin_dir() -> Path | None:
    for directory in CNI_BIN_DIRS:
        if all((directory / p).is_file() for p in ("bridge", "host-local", "loopback")):
            return directory
    return None


def unavailable_reason(tools: Path) -> str | None:
    """Why this host cannot run the real node, or None when it can."""
    if os.geteuid() != 0:
        return "the real node needs root (containers, mounts, iptables)"
    missing = [p for p in HOST_PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install containerd runc iptables iproute2)"
    if cni_bin_dir() is None:
        return "no CNI plugins (apt-get install containernetworking-plugins)"
    for binary in ("kubelet", "kube-proxy", "pause"):
        if not (tools / binary).is_file():
            return f"{binary} missing from {tools}: run e2e/tools/build.sh"
    if not (CGROUP_ROOT / "memory").is_dir() or not (CGROUP_ROOT / "pids").is_dir():
        return "the node expects cgroup v1 memory and pids controllers under /sys/fs/cgroup"
    return None


# --- what the host had before ---------------------------------------------------------


def _run(*argv: str, check: bool = True, stdin: bytes | None = None) -> str:
    result = subprocess.run(argv, input=stdin, capture_output=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.decode()}")
    return result.stdout.decode(errors="replace")


def _chains(family: str, table: str) -> list[str]:
    out = _run(family, "-w", "-t", table, "-S", check=False)
    return [line.split()[1] for line in out.splitlines() if line.startswith("-N ")]


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


@dataclass
class HostSnapshot:
    """What the host had before the node started, so only the node's traces are removed."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    netns: list[str] = field(default_factory=list)
    shim_sockets: list[str] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    kubepods_existed: bool = False

    @classmethod
    def take(cls) -> HostSnapshot:
        chains = {
            f"{family}/{table}": _chains(family, table)
            for family in ("iptables", "ip6tables")
            for table in IPTABLES_TABLES
        }
        sysctls = {}
        for name in SYSCTLS:
            with contextlib.suppress(OSError):
                sysctls[name] = _sysctl_path(name).read_text().strip()
        return cls(
            chains=chains,
            netns=sorted(p.name for p in NETNS_DIR.glob("*")) if NETNS_DIR.is_dir() else [],
            shim_sockets=sorted(p.name for p in SHIM_SOCKET_DIR.glob("*"))
            if SHIM_SOCKET_DIR.is_dir()
            else [],
            sysctls=sysctls,
            kubepods_existed=(CGROUP_ROOT / "memory" / "kubepods").exists(),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostSnapshot:
        return cls(**data)


# --- configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLayout:
    """Where the node keeps everything: one directory inside the bed's run directory."""

    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    def config(self, name: str) -> Path:
        return self.root / "config" / name


def pause_image(tools: Path) -> str:
    """The sandbox image name, tagged with the version the pause binary reports."""
    out = _run(str(tools / "pause"), "-v")
    match = re.search(r"v(\d+\.\d+(?:\.\d+)?)", out)
    return f"{PAUSE_REPOSITORY}:{match.group(1) if match else 'local'}"


def containerd_config(layout: NodeLayout, sandbox_image: str, cni_bin: Path) -> str:
    """containerd 1.6 with the CRI plugin, every path inside the node's directory."""
    root = layout.root
    return f"""version = 2
root = "{root / "containerd" / "root"}"
state = "{root / "containerd" / "state"}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{root / "containerd-ttrpc.sock"}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "containerd" / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # This host refuses a negative oom_score_adj; keep every container at or above ours.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{root / "runc"}"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{layout.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_config(layout: NodeLayout) -> dict[str, Any]:
    """A bridge with host-local addresses; portmap and firewall as a cluster would have.

    The firewall plugin accepts pod traffic in FORWARD, so a host whose FORWARD policy is
    DROP (a Docker daemon with its iptables management on) still passes it.
    """
    return {
        "cniVersion": "1.0.0",
        "name": "roomcast-bed",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.root / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
        ],
    }


def kubelet_config(
    layout: NodeLayout, ca_file: Path, port: int, healthz_port: int
) -> dict[str, Any]:
    """KubeletConfiguration for this host: cgroup v1 with the cgroupfs driver, no swap,
    a kernel that refuses negative oom_score_adj, and paths inside the node's directory."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "oomScoreAdj": 0,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "podLogsDir": str(layout.root / "pod-logs"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "registerWithTaints": [{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        "clusterDomain": "cluster.local",
        "resolvConf": "/etc/resolv.conf",
        # Quick status and probe turnaround for tests; production defaults are slower.
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "10s",
        "serializeImagePulls": False,
        # containerd 1.6.20 cannot pin the sandbox image: never garbage-collect images.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "protectKernelDefaults": False,
        "maxPods": 60,
    }


def kube_proxy_config(kubeconfig: Path, healthz_port: int, metrics_port: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_SUBNET,
        "detectLocalMode": "BridgeInterface",
        "detectLocal": {"bridgeInterface": BRIDGE},
        # NodePorts only on the node's own address, never on eth0 or 127.0.0.1.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the host's conntrack table size and timeouts as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


def write_configs(
    layout: NodeLayout,
    tools: Path,
    *,
    ca_file: Path,
    kubelet_kubeconfig: Path,
    proxy_kubeconfig: Path,
    ports: dict[str, int],
) -> dict[str, list[str]]:
    """Write every configuration file; return the command line of each component."""
    cni_bin = cni_bin_dir()
    if cni_bin is None:
        raise NodeError("no CNI plugins found")
    for directory in (layout.root / "config", layout.cni_conf_dir, layout.kubelet_dir):
        directory.mkdir(parents=True, exist_ok=True)
    sandbox = pause_image(tools)
    layout.config("containerd.toml").write_text(containerd_config(layout, sandbox, cni_bin))
    (layout.cni_conf_dir / "10-roomcast-bed.conflist").write_text(
        json.dumps(cni_config(layout), indent=2)
    )
    kubelet = kubelet_config(layout, ca_file, ports["kubelet"], ports["kubelet_healthz"])
    layout.config("kubelet.json").write_text(json.dumps(kubelet, indent=2))
    proxy = kube_proxy_config(proxy_kubeconfig, ports["proxy_healthz"], ports["proxy_metrics"])
    layout.config("kube-proxy.json").write_text(json.dumps(proxy, indent=2))
    return {
        "containerd": [
            shutil.which("containerd") or "containerd",
            f"--config={layout.config('containerd.toml')}",
            "--log-level=warn",
        ],
        "kubelet": [
            str(tools / "kubelet"),
            f"--config={layout.config('kubelet.json')}",
            f"--kubeconfig={kubelet_kubeconfig}",
            f"--root-dir={layout.kubelet_dir}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--node-labels=" + ",".join(f"{k}={v}" for k, v in NODE_LABELS.items()),
            "--v=1",
        ],
        "kube-proxy": [
            str(tools / "kube-proxy"),
            f"--config={layout.config('kube-proxy.json')}",
            "--v=1",
        ],
    }


# --- host preparation -----------------------------------------------------------------


@contextlib.contextmanager
def host_lock(owner: str) -> Any:
    """Hold the one-node-per-host lock while checking and recording the owner."""
    HOST_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with HOST_LOCK.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def claim_host(owner_state_file: Path) -> None:
    """Record this bed as the host's real node; refuse when another live bed has it."""
    with host_lock(str(owner_state_file)) as handle:
        handle.seek(0)
        current = handle.read().strip()
        if current and current != str(owner_state_file) and Path(current).is_file():
            raise NodeError(
                f"another bed runs the real node on this host ({current}); "
                "stop it with make cluster-down, or set ROOMCAST_REAL_NODE=0"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(str(owner_state_file))


def release_host(owner_state_file: Path) -> None:
    with host_lock(str(owner_state_file)) as handle:
        handle.seek(0)
        if handle.read().strip() == str(owner_state_file):
            handle.seek(0)
            handle.truncate()


def prepare_host() -> None:
    """The node's address device, and forwarding for pod traffic through the bridge."""
    if _run("ip", "-o", "link", "show", NODE_DEVICE, check=False).strip():
        _run("ip", "link", "del", NODE_DEVICE)
    # A device of its own for the address (this kernel has no dummy driver; a bridge
    # with no ports carries an address just as well).
    _run("ip", "link", "add", NODE_DEVICE, "type", "bridge")
    _run("ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_DEVICE)
    _run("ip", "link", "set", NODE_DEVICE, "up")
    _sysctl_path("net/ipv4/ip_forward").write_text("1\n")
    with contextlib.suppress(OSError):
        _sysctl_path("net/bridge/bridge-nf-call-iptables").write_text("1\n")


def ctr(layout: NodeLayout, *args: str, stdin: bytes | None = None, check: bool = True) -> str:
    return _run(
        "ctr", f"--address={layout.containerd_socket}", "--namespace=k8s.io", *args,
        stdin=stdin, check=check,
    )  # fmt: skip


def import_pause_image(layout: NodeLayout, tools: Path) -> str:
    name = pause_image(tools)
    archive = image_archive(
        name,
        [File("pause", (tools / "pause").read_bytes(), 0o755)],
        {"Entrypoint": ["/pause"], "User": "65535:65535"},
    )
    ctr(layout, "images", "import", "--no-unpack=false", "-", stdin=archive)
    return name


def import_docker_image(layout: NodeLayout, image: str) -> None:
    """Copy an image from the local Docker daemon into the node (``docker save | ctr import``)."""
    saved = subprocess.run(["docker", "save", image], capture_output=True, check=False)
    if saved.returncode != 0:
        raise NodeError(f"docker save {image}: {saved.stderr.decode().strip()}")
    ctr(layout, "images", "import", "-", stdin=saved.stdout)


def node_images(layout: NodeLayout) -> list[str]:
    return ctr(layout, "images", "ls", "-q").split()


# --- teardown -------------------------------------------------------------------------


def _pids_in_kubepods() -> set[int]:
    pids: set[int] = set()
    base = CGROUP_ROOT / "pids" / "kubepods"
    if not base.is_dir():
        return pids
    for procs in base.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in procs.read_text().split())
    return pids


def _shim_pids(layout: NodeLayout) -> set[int]:
    found: set[int] = set()
    marker = str(layout.containerd_socket).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and marker in cmdline:
                found.add(int(entry.name))
    return found


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _mounts_under(prefixes: list[str]) -> list[str]:
    """Mount points (deepest first) at or under any of the prefixes."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _new_chains(snapshot: HostSnapshot) -> dict[tuple[str, str], list[str]]:
    """(family, table) -> chains there now that were not there before the node."""
    found = {}
    for family in ("iptables", "ip6tables"):
        for table in IPTABLES_TABLES:
            before = set(snapshot.chains.get(f"{family}/{table}", []))
            new = [c for c in _chains(family, table) if c not in before]
            if new:
                found[(family, table)] = new
    return found


def _delete_new_chains(snapshot: HostSnapshot) -> list[str]:
    removed = []
    for (family, table), new in _new_chains(snapshot).items():
        rules = _run(family, "-w", "-t", table, "-S", check=False).splitlines()
        # Rules of pre-existing (or built-in) chains that refer to a new chain.
        for rule in rules:
            parts = shlex.split(rule)  # comments are quoted and hold spaces
            if len(parts) < 2 or parts[0] != "-A" or parts[1] in new:
                continue
            if any(part in new for part in parts[2:]):
                _run(family, "-w", "-t", table, "-D", *parts[1:], check=False)
        for chain in new:
            _run(family, "-w", "-t", table, "-F", chain, check=False)
        for chain in new:
            _run(family, "-w", "-t", table, "-X", chain, check=False)
        removed += [f"{family}/{table}/{c}" for c in new]
    return removed


def _remove_cgroups() -> None:
    for controller in CGROUP_ROOT.iterdir():
        tree = controller / "kubepods"
        if not tree.is_dir():
            continue
        for directory in sorted(
            (p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()


def _listening_unix_paths() -> set[str]:
    paths = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 8:
                paths.add(parts[7].lstrip("@"))
    return paths


def sweep(layout: NodeLayout, snapshot: HostSnapshot) -> list[str]:
    """Remove every trace of the node that its processes left. Returns what it removed.

    Run after the kubelet, kube-proxy and containerd have stopped. Idempotent.
    """
    removed: list[str] = []
    # Containers and shims outlive containerd by design; nothing of them may stay.
    for _ in range(3):
        stray = _pids_in_kubepods() | _shim_pids(layout)
        if not stray:
            break
        removed += [f"process {pid}" for pid in sorted(stray)]
        _kill_all(stray)
        time.sleep(0.3)
    new_netns = (
        [NETNS_DIR / n for n in os.listdir(NETNS_DIR) if n not in snapshot.netns]
        if NETNS_DIR.is_dir()
        else []
    )
    for point in _mounts_under([str(layout.root), *map(str, new_netns)]):
        result = subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if result.returncode == 0:
            removed.append(f"mount {point}")
    for path in new_netns:
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(f"netns {path.name}")
    veths = _run("ip", "-o", "link", "show", "master", BRIDGE, check=False)
    for line in veths.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if _run("ip", "link", "del", name, check=False) == "":
            removed.append(f"device {name}")
    for device in (BRIDGE, NODE_DEVICE):
        if _run("ip", "-o", "link", "show", device, check=False).strip():
            _run("ip", "link", "del", device, check=False)
            removed.append(f"device {device}")
    removed += [f"chain {c}" for c in _delete_new_chains(snapshot)]
    if not snapshot.kubepods_existed:
        _remove_cgroups()
    listening = _listening_unix_paths()
    if SHIM_SOCKET_DIR.is_dir():
        for sock in SHIM_SOCKET_DIR.iterdir():
            if sock.name not in snapshot.shim_sockets and str(sock) not in listening:
                with contextlib.suppress(OSError):
                    sock.unlink()
    for name, value in snapshot.sysctls.items():
        path = _sysctl_path(name)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
    return removed


def leftovers(layout: NodeLayout, snapshot: HostSnapshot) -> list[str]:
    """Traces of the node still on the host (empty after a clean teardown)."""
    found = [f"process {pid}" for pid in sorted(_pids_in_kubepods() | _shim_pids(layout))]
    found += [f"mount {m}" for m in _mounts_under([str(layout.root)])]
    if NETNS_DIR.is_dir():
        found += [f"netns {n}" for n in os.listdir(NETNS_DIR) if n not in snapshot.netns]
    for device in (BRIDGE, NODE_DEVICE):
        if _run("ip", "-o", "link", "show", device, check=False).strip():
            found.append(f"device {device}")
    for (family, table), new in _new_chains(snapshot).items():
        found += [f"chain {family}/{table}/{c}" for c in new]
    return found
