#!/usr/bin/env python3
"""The runtime image, run for real under containerd + runc: the end-to-end check of
deploy/image/ci-run.sh (which .ci/run runs).

    e2e.py --layout DIR --crossdock PATH

Starts, in a temporary folder, everything it uses and stops it at exit: a containerd of its own
(its own root, state, socket and config; not the system service; namespace `crossdock-ci`)
and four loopback `docker-registry` processes: I holds the image, A the six source images,
B and C are mirror targets. Then:

1. pushes the layout to I with crossdock (`crossdock import oci:DIR:TAG I/tools/crossdock:TAG`)
   and pulls it with `ctr image pull --plain-http`;
2. runs the daemon container with the image's own entrypoint and cmd, host network, the
   configuration folder bind-mounted read-only at /etc/crossdock: it must serve /healthz and
   /readyz, run as uid 65532, mirror the six images from A to B with their digests, and on
   `ctr task kill --signal SIGTERM` exit 0 within its shutdown grace;
3. runs three containers `crossdock run --shard i/3` on six rules from A to C (the listen port
   set per container with CROSSDOCK_SERVER__LISTEN): every rule is listed by exactly one
   daemon's /status and run exactly once across the three (their /metrics), all six images
   reach C, and all three stop on SIGTERM with exit 0.

Needs root (or passwordless sudo) for containerd and runc. A missing tool is a failure, never
a skip. Exit status 0 when every check passed; 1 with `FAIL: ...` and the logs otherwise.
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal as signal_module
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
NAMESPACE = "crossdock-ci"
GRACE_SECONDS = 10
RULES = [f"r{i}" for i in range(1, 7)]
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
TOOLS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc",
         "docker-registry": "docker-registry"}


class Failure(Exception):
    """A check that did not hold."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, accept: str = "") -> tuple[int, dict, str]:
    request = urllib.request.Request(url, method=method)
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), ""
    except OSError:
        return 0, {}, ""


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def digest_of(registry: int, repo: str, tag: str) -> str | None:
    status, headers, _ = http("HEAD", f"http://127.0.0.1:{registry}/v2/{repo}/manifests/{tag}",
                              ACCEPT)
    return headers.get("Docker-Content-Digest") if status == 200 else None


class Stack:
    """Every process and container started here, stopped in reverse order at exit."""

    def __init__(self, work: pathlib.Path):
        self.work = work
        self.sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.containers: dict[str, subprocess.Popen] = {}
        self.socket = work / "containerd" / "containerd.sock"

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def registry(self, name: str) -> int:
        port = free_port()
        config = self.work / f"registry-{name}.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.work}/registry-{name}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n")
        self.spawn(f"registry-{name}", ["docker-registry", "serve", str(config)])
        wait_for(f"registry {name} on :{port}",
                 lambda: http("GET", f"http://127.0.0.1:{port}/v2/")[0] == 200, 20)
        return port

    def containerd(self):
        base = self.work / "containerd"
        base.mkdir()
        config = base / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{base}/root"\nstate = "{base}/state"\n'
            # Only what `ctr run` needs: no CRI (Kubernetes), no metrics or debug listeners.
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
        self.spawn("containerd", [*self.sudo, "containerd", "--config", str(config)])
        wait_for("containerd to serve", lambda: self.ctr("version", check=False).returncode == 0,
                 30)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run([*self.sudo, "ctr", "--address", str(self.socket),
                              "--namespace", NAMESPACE, *args],
                             capture_output=True, text=True)
        if check and run.returncode != 0:
            raise Failure(f"ctr {' '.join(args)}: exit {run.returncode}: {run.stderr.strip()}")
        return run

    def run_container(self, name: str, image: str, config_dir: pathlib.Path,
                      env: list[str] = (), argv: list[str] = ()) -> subprocess.Popen:
        """`ctr run` in the foreground (its exit status is the container's), in the
        background of this script."""
        flags = ["--rm", "--net-host", "--mount",
                 f"type=bind,src={config_dir},dst=/etc/crossdock,options=rbind:ro"]
        for e in env:
            flags += ["--env", e]
        proc = self.spawn(name, [*self.sudo, "ctr", "--address", str(self.socket),
                                 "--namespace", NAMESPACE, "run", *flags, image, name, *argv])
        self.containers[name] = proc
        return proc

    def terminate(self, name: str) -> tuple[int, float]:
        """SIGTERM to the container's process: its exit status and how long it took."""
        start = time.monotonic()
        self.ctr("task", "kill", "--signal", "SIGTERM", name)
        try:
            code = self.containers[name].wait(timeout=GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            raise Failure(f"{name} still runs {GRACE_SECONDS + 5}s after SIGTERM") from None
        return code, time.monotonic() - start

    def task_pid(self, name: str) -> int:
        for line in self.ctr("task", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                return int(fields[1])
        raise Failure(f"no task {name} in `ctr task ls`")

    def signal(self, proc: subprocess.Popen, sig: str):
        """A signal to a process started here (through sudo when not root: sudo relays it)."""
        if self.sudo:
            subprocess.run(["sudo", "-n", "kill", f"-{sig}", str(proc.pid)], check=False)
        else:
            proc.send_signal(getattr(signal_module, f"SIG{sig}"))

    def stop(self, proc: subprocess.Popen, timeout: float):
        if proc.poll() is not None:
            return
        self.signal(proc, "TERM")
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(proc, "KILL")
            proc.wait()

    def close(self):
        for name, proc in self.containers.items():
            if proc.poll() is None:
                self.ctr("task", "kill", "--signal", "SIGKILL", name, check=False)
                self.stop(proc, 10)
        for _, proc in reversed(self.procs):
            self.stop(proc, 15)


def config_toml(listen: int, source: int, target: int) -> str:
    text = (f'[server]\nlisten = "127.0.0.1:{listen}"\n'
            f'[daemon]\nrun_on_start = true\nshutdown_grace = "{GRACE_SECONDS}s"\n'
            # One run each, at start: the next scheduled run is a day away.
            '[defaults]\nschedule = "@every 24h"\n')
    for rule in RULES:
        text += (f'[[rules]]\nname = "{rule}"\nsource = "127.0.0.1:{source}/src/{rule}"\n'
                 f'target = "127.0.0.1:{target}/mirror/{rule}"\ntags = ["v1"]\n')
    return text


def config_dir(stack: Stack, name: str, text: str) -> pathlib.Path:
    folder = stack.work / name
    folder.mkdir()
    (folder / "config.toml").write_text(text)
    # Read by uid 65532 in the container.
    folder.chmod(0o755)
    (folder / "config.toml").chmod(0o644)
    return folder


def push_sources(stack: Stack, crossdock: str, registry: int) -> dict[str, str]:
    """Six distinct small images, A/src/rN:v1; their digests by rule."""
    layout = stack.work / "sources"
    subprocess.run([sys.executable, str(REPO / "bench/regbench/make-image.py"), str(layout),
                    "-p", "1", "-l", "1", "-s", "64K", "--tag", "v1", "--tags", str(len(RULES))],
                   check=True, stdout=subprocess.DEVNULL)
    digests = {}
    for i, rule in enumerate(RULES):
        ref = f"127.0.0.1:{registry}/src/{rule}:v1"
        subprocess.run([crossdock, "import", f"oci:{layout}:v1-{i}", ref], check=True,
                       capture_output=True)
        digests[rule] = digest_of(registry, f"src/{rule}", "v1")
    return digests


def rule_runs(metrics: str) -> dict[str, int]:
    runs: dict[str, int] = {}
    for line in metrics.splitlines():
        if line.startswith("crossdock_rule_runs_total{"):
            rule = re.search(r'rule="([^"]*)"', line).group(1)
            runs[rule] = runs.get(rule, 0) + int(float(line.rsplit(" ", 1)[1]))
    return runs


def check_mirrored(target: int, digests: dict[str, str]) -> bool:
    return all(digest_of(target, f"mirror/{r}", "v1") == d for r, d in digests.items())


def daemon(stack: Stack, image: str, registries: dict[str, int], digests: dict[str, str]):
    port = free_port()
    folder = config_dir(stack, "config-daemon", config_toml(port, registries["A"],
                                                            registries["B"]))
    # No arguments: the image's entrypoint and cmd (`run --config /etc/crossdock/config.toml`).
    stack.run_container("crossdock-daemon", image, folder)
    base = f"http://127.0.0.1:{port}"
    wait_for("/healthz 200", lambda: http("GET", base + "/healthz")[0] == 200)
    wait_for("/readyz 200", lambda: http("GET", base + "/readyz")[0] == 200)
    print(f"ok: the daemon container serves /healthz and /readyz on :{port}")
    uid = next(line.split()[1] for line in
               pathlib.Path(f"/proc/{stack.task_pid('crossdock-daemon')}/status").read_text()
               .splitlines() if line.startswith("Uid:"))
    if uid != "65532":
        raise Failure(f"the container runs as uid {uid}, not 65532")
    print("ok: it runs as uid 65532")
    wait_for("the six images in B", lambda: check_mirrored(registries["B"], digests))
    status = json.loads(http("GET", base + "/status")[2])
    unsuccessful = [r for r in RULES if not status["rules"][r]["last_success"]]
    if unsuccessful:
        raise Failure(f"/status shows no success for {unsuccessful}: {status}")
    print("ok: it mirrored the six images from A to B, digests preserved")
    code, took = stack.terminate("crossdock-daemon")
    if code != 0 or took > GRACE_SECONDS:
        raise Failure(f"SIGTERM: exit {code} after {took:.1f}s (want 0 within {GRACE_SECONDS}s)")
    print(f"ok: SIGTERM stopped it in {took:.1f}s with exit 0")


def shards(stack: Stack, image: str, registries: dict[str, int], digests: dict[str, str]):
    ports = [free_port() for _ in range(3)]
    folder = config_dir(stack, "config-shards", config_toml(ports[0], registries["A"],
                                                            registries["C"]))
    for i, port in enumerate(ports):
        stack.run_container(f"crossdock-shard-{i}", image, folder,
                            env=[f"CROSSDOCK_SERVER__LISTEN=127.0.0.1:{port}"],
                            argv=["crossdock", "run", "--config", "/etc/crossdock/config.toml",
                                  "--shard", f"{i}/3"])
    for port in ports:
        wait_for(f"/readyz on :{port}",
                 lambda p=port: http("GET", f"http://127.0.0.1:{p}/readyz")[0] == 200)

    def runs() -> list[dict[str, int]]:
        return [rule_runs(http("GET", f"http://127.0.0.1:{p}/metrics")[2]) for p in ports]

    wait_for("six runs across the shards", lambda: sum(sum(r.values()) for r in runs()) >= 6)
    time.sleep(1)  # a second run of any rule would show by now
    per_shard = runs()
    owners = [set(json.loads(http("GET", f"http://127.0.0.1:{p}/status")[2])["rules"])
              for p in ports]
    for rule in RULES:
        count = sum(r.get(rule, 0) for r in per_shard)
        listed = [i for i, o in enumerate(owners) if rule in o]
        if count != 1 or len(listed) != 1:
            raise Failure(f"rule {rule}: {count} run(s), listed by shards {listed}; "
                          f"runs per shard {per_shard}")
    wait_for("the six images in C", lambda: check_mirrored(registries["C"], digests), 10)
    sizes = [len(o) for o in owners]
    print(f"ok: shards 0/3, 1/3, 2/3 own {sizes} rules; each of the six ran exactly once")
    for i in range(3):
        code, took = stack.terminate(f"crossdock-shard-{i}")
        if code != 0 or took > GRACE_SECONDS:
            raise Failure(f"shard {i}: SIGTERM gave exit {code} after {took:.1f}s")
    print("ok: SIGTERM stopped the three shards with exit 0")


def run(stack: Stack, layout: str, crossdock: str):
    stack.containerd()
    registries = {name: stack.registry(name) for name in "IABC"}
    tag = json.loads(pathlib.Path(layout, "index.json").read_text())["manifests"][0][
        "annotations"]["org.opencontainers.image.ref.name"]
    image = f"127.0.0.1:{registries['I']}/tools/crossdock:{tag}"
    subprocess.run([crossdock, "import", f"oci:{layout}:{tag}", image], check=True,
                   capture_output=True)
    pulled = stack.ctr("image", "pull", "--plain-http", image)
    (stack.work / "pull.log").write_text(pulled.stdout + pulled.stderr)
    print(f"ok: pushed with crossdock, pulled with ctr: {image}")
    digests = push_sources(stack, crossdock, registries["A"])
    daemon(stack, image, registries, digests)
    shards(stack, image, registries, digests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layout", required=True, help="the image, as build.sh wrote it")
    parser.add_argument("--crossdock", required=True, help="crossdock on this machine")
    args = parser.parse_args()
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items()
               if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        print(f"FAIL: missing {', '.join(missing)}: .ci/run installs them", file=sys.stderr)
        return 1
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"]).returncode != 0:
        print("FAIL: containerd and runc need root: run as root or with passwordless sudo",
              file=sys.stderr)
        return 1
    work = pathlib.Path(tempfile.mkdtemp(prefix="crossdock-image-e2e."))
    stack = Stack(work)
    try:
        run(stack, args.layout, args.crossdock)
        return 0
    except (Failure, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", None) or b""
        print(f"FAIL: {e}\n{detail.decode(errors='replace')}", file=sys.stderr)
        for name in [n for n, _ in stack.procs]:
            print(f"--- {name}.log (tail)\n{stack.log(name)[-3000:]}", file=sys.stderr)
        return 1
    finally:
        stack.close()
        subprocess.run([*stack.sudo, "rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
