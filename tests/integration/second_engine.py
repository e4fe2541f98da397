"""A second, real Docker engine in a network namespace of its own: "another machine" for deploy tests.

Layout, for ``second_engine(work, name="shipyard-it-h", subnet=77)``::

    host netns                                  netns "shipyard-it-h"
    10.77.0.1/24 (veth sy77h) <------------->   10.77.0.2/24 (veth sy77n), lo, default route via .1
    relay thread 10.77.0.1:5000                 relay process 127.0.0.1:5000 -> 10.77.0.1:5000
      -> 127.0.0.1:5000 (the registry)          dockerd: unix://<work>/docker.sock, tcp://10.77.0.2:2375

So ``localhost:5000/...@sha256:...`` names the same image in both engines (Docker treats a loopback
registry as insecure by default: no ``insecure-registries`` needed), and a port the second engine
publishes answers from the host at ``10.77.0.2:<port>``.

With ``ipv6=True``, an engine as on a host with IPv6: the veth pair also has ``fd00:77::1/64`` (host) and
``fd00:77::2/64`` (namespace), and dockerd runs with ``"ipv6": true`` and a ``fixed-cidr-v6``. A port
published without a host address is bound on ``0.0.0.0`` and on ``[::]`` (Docker 26 binds ``[::]`` even
without IPv6: the namespace's lo has ``::1``); the ``[::]`` one answers from the host at
``[fd00:77::2]:<port>`` (its userland proxy forwards to the container's IPv4 address on an IPv4-only
network such as Swarm's ``docker_gwbridge``, where ``mode=host`` ports are published). A port the engine
picks (swarm ``mode=host``) can then be two numbers, one per family: Docker < 27 allocates them apart.

dockerd is started with ``nsenter --net``, not ``ip netns exec``: the latter remounts /sys, and dockerd
then fails with "Devices cgroup isn't mounted". Its data root, exec root, pid file and socket are all
under ``work``; its containers go to the cgroup ``/<name>``, so what a killed run leaves behind (shims
and container processes outlive a SIGKILLed dockerd) can be found again by name and killed.

Swarm on this engine: ``swarm_init()`` works, and so does ``--publish mode=host``. The ingress routing
mesh needs IPVS in the kernel (``ipvs_available()``); without it a service's ingress port refuses
connections. Needs root (netns, veth, mounts).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tenacity

from tests.integration.tcp_relay import Relay

NETNS_DIR = Path("/var/run/netns")
LOCK_DIR = Path("/run/shipyard-it")
RELAY_SCRIPT = Path(__file__).with_name("tcp_relay.py")
REGISTRY_PORT = 5000
API_PORT = 2375


@dataclass(frozen=True)
class SecondEngine:
    """A running second engine; ``url`` and ``address`` are reachable from the host (the test process)."""

    name: str
    netns: str
    url: str  # tcp://10.<subnet>.0.2:2375
    address: str  # 10.<subnet>.0.2: where the ports it publishes answer
    host_address: str  # 10.<subnet>.0.1: the host, as the engine's namespace sees it
    socket: Path
    work: Path
    address6: str = ""  # fd00:<subnet>::2 with ipv6=True (where its IPv6 ports answer), else ""
    subnet: int = 77

    @property
    def log(self) -> Path:
        return self.work / "dockerd.log"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``docker -H <url> <args>``; raises with the CLI's stderr when ``check`` and it fails."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
        argv = ["docker", "-H", self.url, *args]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def swarm_init(self) -> None:
        """Make this engine a single-node swarm manager, advertised on ``address``.

        Services may then publish ``mode=host`` ports (answering at ``address:<port>``); ingress ports
        (the routing mesh, the default mode) only answer where ``ipvs_available()``. On one node a
        ``--update-order start-first`` update of a service with a host-mode port never starts its new task
        (Pending: "host-mode port already in use on 1 node"); stop-first does.
        """
        self.docker("swarm", "init", "--advertise-addr", self.address)


def ipvs_available() -> bool:
    """Whether the kernel has IPVS, which the swarm routing mesh (ingress) load-balances with.

    /proc/net/ip_vs exists in every network namespace once ip_vs is built in or loaded (a loadable
    module not loaded yet reads as unavailable: dockerd's own ``modprobe ip_vs`` may still load it).
    """
    return Path("/proc/net/ip_vs").exists()


@contextlib.contextmanager
def second_engine(
    work: Path, name: str = "shipyard-it-h", subnet: int = 77, *, ipv6: bool = False
) -> Iterator[SecondEngine]:
    """Start a second dockerd in network namespace ``name`` on 10.<subnet>.0.0/24 and tear it all down after;
    with ``ipv6`` also on fd00:<subnet>::/64, its engine with IPv6 enabled.

    Two engines can coexist with different names *and* subnets. A previous run of the same name that was
    killed is cleaned up first; one still running (it holds /run/shipyard-it/<name>.lock) is an error.
    """
    work = work.resolve()
    if len(str(work / "exec-root/containerd/containerd.sock.ttrpc")) > 100:  # sun_path: 108 bytes
        raise ValueError(f"{work} is too long a path for containerd's unix sockets under it")
    host_ip, ns_ip = f"10.{subnet}.0.1", f"10.{subnet}.0.2"
    host_veth, ns_veth = f"sy{subnet}h", f"sy{subnet}n"
    engine = SecondEngine(
        name=name,
        netns=name,
        url=f"tcp://{ns_ip}:{API_PORT}",
        address=ns_ip,
        host_address=host_ip,
        socket=work / "docker.sock",
        work=work,
        address6=f"fd00:{subnet}::2" if ipv6 else "",
        subnet=subnet,
    )
    with contextlib.ExitStack() as stack:
        previous = stack.enter_context(_lock(name, work))
        _clean(name, host_veth, {work} if previous is None else {work, previous})
        stack.callback(_clean, name, host_veth, {work})  # runs last, whatever happened before it
        work.mkdir(parents=True, exist_ok=True)
        _network(name, host_veth, ns_veth, host_ip, ns_ip)
        if ipv6:
            _network6(name, host_veth, ns_veth, subnet)
        stack.callback(Relay(host_ip, REGISTRY_PORT, "127.0.0.1", REGISTRY_PORT).start().close)
        stack.callback(_stop, _netns_relay(name, host_ip, work))
        dockerd = _start_dockerd(engine)
        stack.callback(_stop, dockerd, 30)
        _wait_ready(engine, dockerd)
        yield engine


# --- setup ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _lock(name: str, work: Path) -> Iterator[Path | None]:
    """Hold /run/shipyard-it/<name>.lock (flock: released by the kernel when a run dies, however it
    dies); yields the work directory the previous holder recorded in it, for its leftovers' sake."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / f"{name}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"second engine {name!r} is in use by another test session") from None
        lock.seek(0)
        previous = lock.read().strip()
        lock.seek(0)
        lock.truncate()
        lock.write(str(work))
        lock.flush()
        yield Path(previous) if previous else None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _network(name: str, host_veth: str, ns_veth: str, host_ip: str, ns_ip: str) -> None:
    _ip("netns", "add", name)
    _ip("link", "add", host_veth, "type", "veth", "peer", "name", ns_veth)
    _ip("link", "set", ns_veth, "netns", name)
    _ip("addr", "add", f"{host_ip}/24", "dev", host_veth)
    _ip("link", "set", host_veth, "up")
    _ip("-n", name, "addr", "add", f"{ns_ip}/24", "dev", ns_veth)
    _ip("-n", name, "link", "set", ns_veth, "up")
    _ip("-n", name, "link", "set", "lo", "up")  # the namespace's relay listens on its 127.0.0.1
    _ip("-n", name, "route", "add", "default", "via", host_ip)


def _network6(name: str, host_veth: str, ns_veth: str, subnet: int) -> None:
    """fd00:<subnet>::1/64 on the host's end, ::2/64 on the namespace's; no duplicate address detection
    (the addresses are usable at once) and no IPv6 route out of the namespace: only the host is reached."""
    _ip("addr", "add", f"fd00:{subnet}::1/64", "dev", host_veth, "nodad")
    _ip("-n", name, "addr", "add", f"fd00:{subnet}::2/64", "dev", ns_veth, "nodad")


def _nsenter(name: str) -> list[str]:
    return ["nsenter", f"--net={NETNS_DIR / name}"]


def _netns_relay(name: str, host_ip: str, work: Path) -> subprocess.Popen[str]:
    """``127.0.0.1:5000`` inside the namespace -> the host relay; returns once it listens (it says so)."""
    argv = [*_nsenter(name), sys.executable, str(RELAY_SCRIPT), "127.0.0.1", str(REGISTRY_PORT)]
    with open(work / "relay.log", "w") as log:
        proc = subprocess.Popen(
            [*argv, host_ip, str(REGISTRY_PORT)], stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
    assert proc.stdout is not None
    with proc.stdout:
        line = proc.stdout.readline()  # EOF (""), should the relay fail to bind and exit
    if not line.startswith("listening "):
        _stop(proc)
        raise RuntimeError(f"the relay in netns {name} did not start: {(work / 'relay.log').read_text()[-2000:]}")
    return proc


def _start_dockerd(engine: SecondEngine) -> subprocess.Popen[bytes]:
    work = engine.work
    config = {
        "features": {"containerd-snapshotter": True},  # as the host engine: image IDs are manifest/index digests
        "cgroup-parent": f"/{engine.name}",  # its containers, findable by name (see _clean)
        "shutdown-timeout": 5,  # stopping containers on the way out: 5 s, not 15
    }
    if engine.address6:  # IPv6 on the default bridge; ports are published on [::] as well as 0.0.0.0
        config |= {"ipv6": True, "fixed-cidr-v6": f"fd00:{engine.subnet}:1::/64"}
    (work / "daemon.json").write_text(json.dumps(config, indent=2) + "\n")
    (work / "docker.pid").unlink(missing_ok=True)
    argv = [*_nsenter(engine.netns), "dockerd", "--config-file", str(work / "daemon.json")]
    argv += ["--data-root", str(work / "data-root"), "--exec-root", str(work / "exec-root")]
    argv += ["--pidfile", str(work / "docker.pid")]
    argv += ["-H", f"unix://{engine.socket}", "-H", engine.url]
    # Docker 26 sleeps 15 s at start ("Binding to an IP address without --tlsverify is deprecated. Startup is
    # intentionally being slowed down") for a tcp:// host unless TLS is explicitly off: --tls=false. A later
    # Docker refuses plain tcp outright; the socket is only reachable from this machine's test namespace.
    argv += ["--tls=false"]
    env = {**os.environ, "PATH": f"/usr/sbin:/sbin:{os.environ.get('PATH', '/usr/bin:/bin')}"}  # iptables, docker-proxy
    with open(engine.log, "w") as log:
        # a session of its own: pytest's Ctrl-C reaches the teardown, which stops dockerd, not dockerd itself
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)


def _wait_ready(engine: SecondEngine, dockerd: subprocess.Popen[bytes]) -> None:
    """Poll ``/_ping`` on the unix socket, then on the tcp URL (its listener comes a moment later)."""
    host, port = engine.url.removeprefix("tcp://").split(":")
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(60),
        wait=tenacity.wait_exponential(multiplier=0.02, max=0.5),
        retry=tenacity.retry_if_exception_type(OSError),
    )
    try:
        for attempt in retrying:
            with attempt:
                if dockerd.poll() is not None:
                    raise RuntimeError(f"dockerd exited {dockerd.returncode}")
                _ping(socket.AF_UNIX, str(engine.socket))
                _ping(socket.AF_INET, (host, int(port)))
    except (RuntimeError, tenacity.RetryError) as error:
        raise RuntimeError(f"second engine did not start ({error}); {engine.log}:\n{_tail(engine.log)}") from error


def _ping(family: int, address: str | tuple[str, int]) -> None:
    """``GET /_ping`` of the engine API; OSError unless it answers 200. A bare socket, closed whatever happens
    (httpx's unix transport leaks the socket of a refused connect: a ResourceWarning, an error under pytest)."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(address)
        sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        status = b""
        while b"\r\n" not in status and (chunk := sock.recv(256)):
            status += chunk
    if not status.startswith((b"HTTP/1.0 200 ", b"HTTP/1.1 200 ")):
        raise OSError(f"/_ping answered {status[:80]!r}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


# --- teardown ------------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace: float = 5) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _clean(name: str, host_veth: str, works: set[Path]) -> None:
    """Remove whatever a run named ``name`` left: processes in its netns or its containers' cgroup,
    mounts under its work directories, the netns, the host end of the veth, empty cgroups, data."""
    netns = NETNS_DIR / name
    _kill(_pids(netns), name)
    for work in works:
        _unmount_under(work)
    if netns.exists():
        _ip("netns", "del", name)  # also frees the veth pair, once nothing holds the namespace
    if Path(f"/sys/class/net/{host_veth}").exists():
        subprocess.run(["ip", "link", "del", host_veth], capture_output=True)  # gone already, or now
    for top in [Path("/sys/fs/cgroup", name), *Path("/sys/fs/cgroup").glob(f"*/{name}")]:  # cgroup v2, v1
        for group, _, _ in os.walk(top, topdown=False):
            with contextlib.suppress(OSError):
                os.rmdir(group)
    for work in works:
        for sub in ("data-root", "exec-root"):
            shutil.rmtree(work / sub, ignore_errors=True)
        for leftover in ("docker.pid", "docker.sock"):
            (work / leftover).unlink(missing_ok=True)


def _pids(netns: Path) -> set[int]:
    """Processes in that network namespace (dockerd, containerd, shims, docker-proxy, the relay)."""
    if not netns.exists():
        return set()
    inode = netns.stat().st_ino
    found = set()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "ns" / "net").stat().st_ino == inode:
                found.add(int(proc.name))
    return found


def _kill(pids: set[int], cgroup: str) -> None:
    """SIGKILL ``pids`` and every process in cgroup ``/<cgroup>/...``; wait until they are gone (or zombies:
    nothing may reap orphans here, and a zombie holds no namespace or mount)."""
    marker = f":/{cgroup}/"
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and marker in (proc / "cgroup").read_text():
                pids.add(int(proc.name))
    pids.discard(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for attempt in tenacity.Retrying(
        stop=tenacity.stop_after_delay(30), wait=tenacity.wait_exponential(multiplier=0.01, max=0.2), reraise=True
    ):
        with attempt:
            alive = {pid for pid in pids if _alive(pid)}
            assert not alive, f"still running after SIGKILL: {sorted(alive)}"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _unmount_under(root: Path) -> None:
    """Unmount every mount point at or under ``root``, deepest first (lazily, if busy)."""
    prefix = str(root)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # "\040" for a space, as the kernel escapes
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
