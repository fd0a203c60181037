#!/usr/bin/env python3
"""crossdock against skopeo and the raw-upload limit, on two loopback registries (issue 5).

    bench/run.sh [RUNS] [options]          (or: python3 bench/run.py --runs RUNS [options])

What it does, in order:
 1. `cargo build --release` (skip with --no-build or name a binary with --bin);
 2. starts two private CNCF distribution 2.8 registries (`docker-registry`) on free loopback
    ports with regbench's start-registries.sh, in a fresh temporary directory under --tmp: A is
    the source, B the destination;
 3. generates the images with regbench's make-image.py (deterministic: same arguments, same
    digests; cached under --img so a second run skips this) and seeds A — seed.sh (skopeo) for
    the one-tag images, bench/push_layout.py for the many-tag repositories;
 4. runs every case, crossdock and its peers **alternately** (the order rotates each round), each
    run into a never-used destination repository; skopeo's blob-info cache is deleted before each
    skopeo copy/sync (regbench's copy-fresh.sh / sync-fresh.sh), and crossdock keeps no state
    between processes;
 5. records per run the wall time, CPU (user+sys) and peak RSS of the process (wait4), the HTTP
    requests each registry wrote to its access log meanwhile (regbench's reqcount.py) and each
    registry process's CPU seconds; prints medians, ranges and paired ratios (the median of the
    per-round ratios), and writes results.md + results.json into --out.

Cases (issue 5): a 3 platforms x 4 layers x 16 MiB; b 5 x 10 x 2 MiB; c 1 layer of --c-size
(1 GiB); d no-op re-import of a, b, c; e 50 tags (2 platforms each) fresh `sync`; f the same 50
tags no-op; g 1,000 tags x 1 platform, 5 of them changed between two syncs; h (issue 12) peak
RSS of one rule over --h-tags tags (default 10,000 and 100,000, all at one small image, so that
what grows is the number of tags and nothing else): a first sync, then a no-op sync.
With --rtt-ms N (issue 18) cases e, f and g go through bench/wan_proxy.py, a modelled wide-area
link in front of A and B (each direction delayed by N/2 ms, each new connection by N ms), and
the report adds each run's round-trip bound (requests / --inflight x RTT) and connections.
Everything generated goes under --tmp (registries) and --img (images); the registries are
stopped (by PID) and their storage deleted at the end, even on failure (--keep keeps it).
Needs: docker-registry, skopeo, python3 (stdlib) and cargo. The regbench scripts it calls
(start/stop-registries.sh, make-image.py, seed.sh, copy-fresh.sh, sync-fresh.sh, raw-copy.py,
reqcount.py) are in bench/regbench/ (copied unchanged from the regbench study), so that a
clone alone reproduces the figures; --regbench DIR (or $REGBENCH) runs another copy.
"""
import argparse
import datetime
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# make-image.py arguments per case (all tar-gzip, gzip level 0: see regbench's README).
SPECS = {
    "a": ["-p", "3", "-l", "4", "-s", "16M", "--tag", "v1"],
    "b": ["-p", "5", "-l", "10", "-s", "2M", "--tag", "v1"],
    "sync": ["-p", "2", "-l", "1", "-s", "64K", "--tag", "t", "--tags", "50"],
}
G_LAYER = "4K"
TIME = shutil.which("time", path="/usr/bin:/bin")   # GNU time, for CPU and peak RSS


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return [str(p) for p in ports]


def parse_size(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(float(s[:-1] if s[-1:] in "KMG" else s) * mult)


def loadavg():
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_range(xs, digits=3):
    if not xs:
        return "–"
    f = "%%.%df" % digits
    return "%s [%s–%s]" % (f % med(xs), f % min(xs), f % max(xs))


class Bench:
    def __init__(self, args):
        self.args = args
        self.regbench = os.path.abspath(args.regbench)
        for f in ("start-registries.sh", "stop-registries.sh", "make-image.py", "seed.sh",
                  "copy-fresh.sh", "sync-fresh.sh", "raw-copy.py", "reqcount.py"):
            if not os.path.exists(os.path.join(self.regbench, f)):
                sys.exit("regbench not found: %s/%s is missing (use --regbench DIR)" % (self.regbench, f))
        spec = importlib.util.spec_from_file_location("reqcount", os.path.join(self.regbench, "reqcount.py"))
        self.rc = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.rc)
        self.work = tempfile.mkdtemp(prefix="crossdock-bench-", dir=args.tmp)
        self.base = os.path.join(self.work, "registries")
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs)
        self.ports = free_ports(2)
        self.A = "127.0.0.1:" + self.ports[0]
        self.B = "127.0.0.1:" + self.ports[1]
        # The addresses clients of cases e, f and g use: A and B themselves, or with --rtt-ms the
        # modelled wide-area link in front of each (bench/wan_proxy.py).
        self.cA, self.cB = self.A, self.B
        self.proxy = None
        self.env = dict(os.environ, REGBENCH_BASE=self.base, REGBENCH_COUNTER=os.path.join(self.work, "counter"))
        self.runs = []      # every measured run
        self.seq = 0
        self.cd = None

    # ---- set-up -------------------------------------------------------------------------
    def rb(self, name):
        return os.path.join(self.regbench, name)

    def sh(self, cmd, **kw):
        return subprocess.run(cmd, env=self.env, check=True, **kw)

    def build(self):
        if self.args.bin:
            self.cd = os.path.abspath(self.args.bin)
            return
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
        self.cd = os.path.join(target, "release", "crossdock")
        if self.args.no_build:
            return
        log("== cargo build --release")
        t0 = time.monotonic()
        subprocess.run(["cargo", "build", "--release", "--bin", "crossdock"], cwd=REPO, check=True)
        log("   built in %.0f s" % (time.monotonic() - t0))

    def check_disk(self):
        need = self.args.c_bytes * 4 + (2 << 30) if "c" in self.cases else 2 << 30
        for path in (self.args.tmp, self.args.img):
            os.makedirs(path, exist_ok=True)
            free = shutil.disk_usage(path).free
            if free < need:
                sys.exit("%s has %.1f GiB free; the cases need about %.1f GiB (smaller case c: --c-size)"
                         % (path, free / 2**30, need / 2**30))

    def start(self):
        self.sh([self.rb("start-registries.sh"), "-d", self.base] + self.ports, stdout=subprocess.DEVNULL)
        log("== registries: A (source) %s, B (destination) %s, under %s" % (self.A, self.B, self.base))

    def start_link(self):
        """bench/wan_proxy.py in front of A and B; cases e, f and g then go through it."""
        pa, pb = free_ports(2)
        self.proxy_log = os.path.join(self.logs, "wan-proxy.log")
        self.proxy = subprocess.Popen(
            ["python3", os.path.join(HERE, "wan_proxy.py"), "--rtt-ms", str(self.args.rtt_ms),
             pa, self.A, pb, self.B], stdout=open(self.proxy_log, "w"), stderr=subprocess.STDOUT)
        for _ in range(100):
            if os.path.exists(self.proxy_log) and open(self.proxy_log).read().startswith("ready"):
                break
            time.sleep(0.05)
        else:
            sys.exit("bench/wan_proxy.py did not start (see %s)" % self.proxy_log)
        self.cA, self.cB = "127.0.0.1:" + pa, "127.0.0.1:" + pb
        self.link_ports = {"A": pa, "B": pb}
        log("== modelled link: %g ms RTT, A at %s, B at %s" % (self.args.rtt_ms, self.cA, self.cB))

    def connections(self):
        """Connections the link accepted so far, per registry ({} without --rtt-ms)."""
        if not self.proxy:
            return {}
        lines = open(self.proxy_log).read().split("\n")
        return {role: sum(1 for ln in lines if ln == "connect " + port) for role, port in self.link_ports.items()}

    def stop(self):
        if self.proxy:
            self.proxy.terminate()
            self.proxy.wait()
        subprocess.run([self.rb("stop-registries.sh"), "-d", self.base] + ([] if self.args.keep else ["--purge"])
                       + self.ports, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def image(self, name, spec):
        """A layout under --img, made once (make-image.py is deterministic)."""
        d = os.path.join(self.args.img, name)
        if not os.path.exists(os.path.join(d, "index.json")):
            log("   make-image.py %s %s" % (name, " ".join(spec)))
            shutil.rmtree(d, ignore_errors=True)
            self.sh(["python3", self.rb("make-image.py"), d] + spec, stdout=subprocess.DEVNULL)
        return d

    def seed(self, layout, repo, tag=None, fast=False):
        if fast:
            self.sh(["python3", os.path.join(HERE, "push_layout.py"), layout, "%s/%s" % (self.A, repo)]
                    + (["--tags", tag] if tag else []), stdout=subprocess.DEVNULL)
        else:
            self.sh([self.rb("seed.sh"), layout, self.A, repo] + ([tag] if tag else []), stdout=subprocess.DEVNULL)

    def layout_bytes(self, layout, tag):
        out = subprocess.run(["python3", self.rb("raw-copy.py"), "--src-layout", layout, "--tag", tag,
                              "--dst", "x/y", "--count-only"], check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    # ---- one measured run ---------------------------------------------------------------
    def settle(self, offsets):
        """Waits until the registries stop writing log lines (the access log line of the last
        request can land a moment after the client has its answer)."""
        time.sleep(0.25)
        last = None
        for _ in range(40):
            now = self.rc.sizes(self.base, self.ports)
            if now == last:
                return
            last = now
            time.sleep(0.1)

    def measure(self, case, tool, cmd, **extra):
        self.seq += 1
        offs = self.rc.sizes(self.base, self.ports)
        conns0 = self.connections()
        cpu0 = {p: self.rc.cpu_s(self.base, p) for p in self.ports}
        out = os.path.join(self.logs, "%04d-%s-%s.log" % (self.seq, case, tool))
        usage = out + ".time"
        # Peak RSS through GNU time: wait4's ru_maxrss of a child of this (~20 MiB) Python
        # process includes the parent's RSS at fork, which would hide a small client's own.
        wrap = [TIME, "-f", "%U %S %M", "-o", usage] if TIME else []
        with open(out, "wb") as f:
            t0 = time.monotonic()
            p = subprocess.Popen(wrap + cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=self.env)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.monotonic() - t0
        rcode = os.waitstatus_to_exitcode(status)
        cpu, peak = ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
        if TIME and os.path.exists(usage):
            fields = open(usage).read().split()[-3:]
            if len(fields) == 3:
                cpu, peak = float(fields[0]) + float(fields[1]), int(fields[2]) / 1024
        self.settle(offs)
        counts = self.rc.count(self.base, offs)
        regs = {}
        for role, port in zip("AB", self.ports):
            c1 = self.rc.cpu_s(self.base, port)
            regs[role] = dict(counts[port], cpu_s=round(c1 - cpu0[port], 3))
        if conns0:
            extra["connections"] = {k: v - conns0[k] for k, v in self.connections().items()}
        r = dict(case=case, tool=tool, wall_s=round(wall, 4), cpu_s=round(cpu, 3), load1=loadavg()[0],
                 peak_mib=round(peak, 1), rc=rcode, registries=regs, cmd=cmd, **extra)
        if rcode != 0:
            with open(out, "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", "replace")
            sys.exit("%s/%s failed (exit %d): %s\n%s" % (case, tool, rcode, " ".join(cmd), tail))
        log("   %-2s %-10s %7.3f s  cpu %5.2f s  rss %5.1f MiB  req A %4d  B %4d" % (
            case, tool, wall, r["cpu_s"], r["peak_mib"], regs["A"]["total"], regs["B"]["total"]))
        return r

    def alternate(self, case, tools, rounds, warmup=0):
        """Runs each tool once per round, rotating the order; returns {tool: [runs]}."""
        res = {t: [] for t, _ in tools}
        for i in range(warmup + rounds):
            order = tools[i % len(tools):] + tools[:i % len(tools)]
            for name, make in order:
                r = self.measure(case, name, make())
                if i >= warmup:
                    r["round"] = i - warmup
                    res[name].append(r)
                    self.runs.append(r)
        return res

    # ---- commands -------------------------------------------------------------------------
    def fresh(self, prefix):
        n = int(open(self.env["REGBENCH_COUNTER"]).read()) + 1 if os.path.exists(self.env["REGBENCH_COUNTER"]) else 1
        with open(self.env["REGBENCH_COUNTER"], "w") as f:
            f.write(str(n))
        return "%s-%d" % (prefix, n)

    def cd_import(self, src, dst):
        return [self.cd, "import", src, dst]

    def sync_config(self, src_repo, target):
        path = os.path.join(self.work, "sync-%d.toml" % (self.seq + 1))
        with open(path, "w") as f:
            f.write('[[rules]]\nname = "bench"\nsource = "%s/%s"\ntarget = "%s"\n[rules.tags]\nall = true\n'
                    % (self.cA, src_repo, target))
        return path

    def cd_sync(self, src_repo, target):
        return [self.cd, "sync", "--config", self.sync_config(src_repo, target)]

    def skopeo_copy(self, src, dst):
        return ["skopeo", "copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false",
                "--dest-tls-verify=false", "docker://" + src, "docker://" + dst]

    def skopeo_sync(self, src_repo, dst):
        return ["skopeo", "sync", "--all", "--preserve-digests", "--src", "docker", "--dest", "docker",
                "--src-tls-verify=false", "--dest-tls-verify=false", "%s/%s" % (self.cA, src_repo), dst]

    # ---- cases ------------------------------------------------------------------------------
    def copy_case(self, case, layout, rounds, warmup):
        src = "%s/bench/%s:v1" % (self.A, case)
        # The first crossdock target of each case is kept for case d (the no-op re-import).
        firsts = []

        def cd():
            dst = "%s/%s:v1" % (self.B, self.fresh("cd-" + case))
            firsts.append(dst)
            return self.cd_import(src, dst)
        tools = [("crossdock", cd)] + [
                 (name, lambda b=b: [b, "import", src, "%s/%s:v1" % (self.B, self.fresh("x-" + case))])
                 for name, b in self.args.compare] + [
                 ("skopeo", lambda: [self.rb("copy-fresh.sh"), src, "%s/sk-%s" % (self.B, case)]),
                 ("raw", lambda: ["python3", self.rb("raw-copy.py"), "--src", "%s/bench/%s" % (self.A, case),
                                  "--tag", "v1", "--dst", "%s/raw-%s" % (self.B, case), "--fresh", "-j", "4"])]
        res = self.alternate(case, tools, rounds, warmup=warmup)
        self.noop_targets[case] = firsts[-1]
        return res

    def noop_case(self, case, rounds):
        src = "%s/bench/%s:v1" % (self.A, case)
        dst = self.noop_targets[case]
        tools = [("crossdock", lambda: self.cd_import(src, dst))] + [
                 (name, lambda b=b: [b, "import", src, dst]) for name, b in self.args.compare] + [
                 ("skopeo", lambda: self.skopeo_copy(src, dst))]
        return self.alternate("d-" + case, tools, rounds, warmup=1)

    def run(self):
        a = self.args
        self.cases = a.cases
        self.load_start = loadavg()
        self.check_disk()
        self.build()
        if not os.access(self.cd, os.X_OK):
            sys.exit("no crossdock binary at %s" % self.cd)
        self.start()
        results = {}
        self.noop_targets = {}
        layouts = {}
        t_start = time.monotonic()
        log("== images (under %s) and seeding A" % a.img)
        for case in ("a", "b", "c"):
            if case in self.cases or ("d" in self.cases and case in a.d_images):
                spec = SPECS[case] if case != "c" else ["-p", "1", "-l", "1", "-s", a.c_size, "--tag", "v1"]
                layouts[case] = self.image(case if case != "c" else "c-" + a.c_size, spec)
                self.seed(layouts[case], "bench/" + case, "v1")
        if {"e", "f"} & set(self.cases):
            layouts["sync"] = self.image("sync", SPECS["sync"])
            self.seed(layouts["sync"], "bench/sync", fast=True)
        if "g" in self.cases:
            layouts["g"] = self.image("g-%d" % a.g_tags, ["-p", "1", "-l", "1", "-s", G_LAYER, "--tag", "t",
                                                          "--tags", str(a.g_tags)])
            self.seed(layouts["g"], "bench/g", fast=True)
        log("   ready in %.0f s" % (time.monotonic() - t_start))
        if a.rtt_ms:
            self.start_link()

        for case in ("a", "b", "c"):
            if case in self.cases or ("d" in self.cases and case in a.d_images):
                rounds = a.runs_c if case == "c" else a.runs
                warmup = 0 if case == "c" else a.warmup
                if case not in self.cases:
                    rounds, warmup = 1, 0   # only to fill the target for case d
                log("== case %s (%d rounds)" % (case, rounds))
                res = self.copy_case(case, layouts[case], rounds, warmup)
                if case in self.cases:
                    results[case] = dict(res, bytes=self.layout_bytes(layouts[case], "v1"))
        if "d" in self.cases:
            for case in a.d_images:
                log("== case d: no-op re-import of %s" % case)
                results["d-" + case] = self.noop_case(case, a.runs)
        if "e" in self.cases or "f" in self.cases:
            log("== case e: 50 tags, fresh sync")
            firsts = []

            def cd_e():
                prefix = self.fresh("cdsync")
                firsts.append(prefix)
                return self.cd_sync("bench/sync", "%s/%s/{name}" % (self.cB, prefix))
            tools = [("crossdock", cd_e)] + [
                     (name, lambda b=b: [b] + self.cd_sync("bench/sync", "%s/%s/{name}" % (
                         self.cB, self.fresh("xsync")))[1:]) for name, b in a.compare] + [
                     ("skopeo", lambda: [self.rb("sync-fresh.sh"), "%s/bench/sync" % self.cA, "%s/sksync" % self.cB])]
            res = self.alternate("e", tools, a.runs if "e" in self.cases else 1,
                                 warmup=a.warmup if "e" in self.cases else 0)
            if "e" in self.cases:
                results["e"] = res
            if "f" in self.cases:
                log("== case f: the same 50 tags, no-op sync")
                # skopeo sync puts SRC's last path element under the destination: PREFIX/sync,
                # the same repository crossdock's "{name}" template fills.
                prefix = firsts[0]
                tools = [("crossdock", lambda: self.cd_sync("bench/sync", "%s/%s/{name}" % (self.cB, prefix)))] + [
                         (name, lambda b=b: [b] + self.cd_sync("bench/sync", "%s/%s/{name}" % (self.cB, prefix))[1:])
                         for name, b in a.compare] + [
                         ("skopeo", lambda: self.skopeo_sync("bench/sync", "%s/%s" % (self.cB, prefix)))]
                results["f"] = self.alternate("f", tools, a.runs, warmup=1)
        if "g" in self.cases:
            results["g"] = self.case_g(layouts["g"])
        if "h" in self.cases:
            results["h"] = self.case_h()
        self.results = results
        self.elapsed = time.monotonic() - t_start

    def case_g(self, layout):
        a = self.args
        log("== case g: %d tags, first sync, then (no-op sync, change 5 tags, sync) x %d" % (a.g_tags, a.runs))
        prefix = self.fresh("cdg")
        target = "%s/%s/{name}" % (self.cB, prefix)
        out = {"first": [], "noop": [], "changed": [], "skopeo_noop": []}
        r = self.measure("g", "first", self.cd_sync("bench/g", target))
        out["first"].append(r)
        self.runs.append(r)
        for i in range(a.runs):
            r = self.measure("g", "noop", self.cd_sync("bench/g", target))
            out["noop"].append(r)
            self.runs.append(r)
            # Five tags move to new images (a new seed per round, so each round changes them).
            changed = self.image("g-changed-%d" % (i + 1), ["-p", "1", "-l", "1", "-s", G_LAYER, "--tag", "t",
                                                             "--tags", "5", "--seed", str(i + 1)])
            self.seed(changed, "bench/g", fast=True)
            r = self.measure("g", "changed5", self.cd_sync("bench/g", target))
            out["changed"].append(r)
            self.runs.append(r)
        for _ in range(a.g_skopeo):
            # skopeo's steady state: a no-op sync of the same 1,000 tags into crossdock's target.
            r = self.measure("g", "skopeo-noop", self.skopeo_sync("bench/g", "%s/%s" % (self.cB, prefix)))
            out["skopeo_noop"].append(r)
            self.runs.append(r)
        return out

    def seed_tags(self, repo, n):
        """Repository REPO at A with one small single-platform image under N tags (t0 … tN-1).
        The image and t0 go through the registry's API (bench/push_layout.py); t1 … tN-1 are
        written straight into A's filesystem storage as distribution 2.8 lays a tag out
        (`_manifests/tags/T/current/link` and `…/index/sha256/HEX/link`, each holding the
        digest), which is exactly what a PUT by tag writes and takes seconds for 100,000 tags
        instead of minutes. Distribution keeps no tag cache, so it serves them at once; t0
        … tN-1 are then checked through the API (tag list and a HEAD of the last)."""
        base = self.image("h-base", ["-p", "1", "-l", "1", "-s", G_LAYER, "--tag", "t"])
        d = os.path.join(self.args.img, "h1")
        if not os.path.exists(os.path.join(d, "index.json")):
            # The platform manifest of make-image.py's one-child index, tagged t0.
            os.makedirs(d, exist_ok=True)
            if not os.path.exists(os.path.join(d, "blobs")):
                os.symlink(os.path.join(base, "blobs"), os.path.join(d, "blobs"))
            shutil.copy(os.path.join(base, "oci-layout"), d)
            top = json.load(open(os.path.join(base, "index.json")))["manifests"][0]
            with open(os.path.join(base, "blobs", "sha256", top["digest"][7:])) as f:
                child = json.load(f)["manifests"][0]
            entry = {k: child[k] for k in ("mediaType", "digest", "size")}
            entry["annotations"] = {"org.opencontainers.image.ref.name": "t0"}
            with open(os.path.join(d, "index.json"), "w") as f:
                json.dump({"schemaVersion": 2, "manifests": [entry]}, f)
        self.sh(["python3", os.path.join(HERE, "push_layout.py"), d, "%s/%s" % (self.A, repo)],
                stdout=subprocess.DEVNULL)
        digest = json.load(open(os.path.join(d, "index.json")))["manifests"][0]["digest"]
        tags = os.path.join(self.base, self.ports[0], "storage", "docker", "registry", "v2", "repositories",
                            repo, "_manifests", "tags")
        for i in range(1, n):
            t = os.path.join(tags, "t%d" % i)
            for link in (os.path.join(t, "current"), os.path.join(t, "index", "sha256", digest[7:])):
                os.makedirs(link, exist_ok=True)
                with open(os.path.join(link, "link"), "w") as f:
                    f.write(digest)
        out = subprocess.run(["curl", "-sf", "http://%s/v2/%s/tags/list" % (self.A, repo)], check=True,
                             capture_output=True, text=True).stdout
        listed = len(json.loads(out)["tags"])
        if listed != n:
            sys.exit("seeding %s: the registry lists %d tags, not %d" % (repo, listed, n))

    def case_h(self):
        out = {}
        for n in self.args.h_tags:
            log("== case h: %d tags of one image: first sync, then no-op sync" % n)
            t0 = time.monotonic()
            self.seed_tags("bench/h%d" % n, n)
            log("   seeded %d tags in %.0f s" % (n, time.monotonic() - t0))
            target = "%s/%s/{name}" % (self.B, self.fresh("cdh"))
            runs = []
            for kind in ["first"] + ["noop"] * self.args.h_runs:
                r = self.measure("h%d" % n, kind, self.cd_sync("bench/h%d" % n, target), tags=n)
                runs.append(r)
                self.runs.append(r)
            out[str(n)] = runs
        return out

    # ---- report -------------------------------------------------------------------------------
    def bound(self, r):
        """The round-trip bound of a run: its requests (A + B) / requests in flight x RTT."""
        reqs = r["registries"]["A"]["total"] + r["registries"]["B"]["total"]
        return reqs / self.args.inflight * self.args.rtt_ms / 1000.0

    def link_table(self, L):
        """Per case over the modelled link: wall, connections, the round-trip bound, wall / bound."""
        a, res = self.args, self.results
        L.append("\nOver the modelled link (%g ms RTT, bench/wan_proxy.py in front of A and B): bound = requests "
                 "(A + B) / %d in flight x RTT; connections = TCP connections the link accepted per run (each "
                 "costs one RTT before its first request).\n" % (a.rtt_ms, a.inflight))
        L.append("| case | tool | runs | wall s | requests A + B | connections A / B | bound s | wall / bound |")
        L.append("|---|---|---:|---|---:|---|---:|---|")
        groups = []
        for case in ("e", "f"):
            for tool in ["crossdock"] + [n for n, _ in a.compare] + ["skopeo"]:
                groups.append(("%s%s" % (case, " (no-op)" if case == "f" else ""), tool, res.get(case, {}).get(tool, [])))
        if "g" in res:
            g = res["g"]
            groups += [("g", "crossdock first sync", g["first"]), ("g (no-op)", "crossdock no-op sync", g["noop"]),
                       ("g", "crossdock 5 changed", g["changed"]), ("g (no-op)", "skopeo no-op sync", g["skopeo_noop"])]
        for case, tool, runs in groups:
            if not runs:
                continue
            reqs = [r["registries"]["A"]["total"] + r["registries"]["B"]["total"] for r in runs]
            conns = [r.get("connections", {}) for r in runs]
            ratios = [r["wall_s"] / self.bound(r) for r in runs if self.bound(r) > 0]
            L.append("| %s | %s | %d | %s | %s | %s / %s | %.3f | %s |" % (
                case, tool, len(runs), fmt_range(self.walls(runs)),
                ("%d" % reqs[0]) if len(set(reqs)) == 1 else "%d–%d" % (min(reqs), max(reqs)),
                "%g" % med([c.get("A", 0) for c in conns]), "%g" % med([c.get("B", 0) for c in conns]),
                med([self.bound(r) for r in runs]), fmt_range(ratios, 2)))
        for case, tool, runs in groups:
            if "no-op" in case and tool.startswith("crossdock") and runs:
                ratio = med([r["wall_s"] / self.bound(r) for r in runs])
                L.append("\nTarget (issue 18): %s no-op within 1.5 x the round-trip bound: %.2f x, %s." % (
                    case.split()[0], ratio, "met" if ratio <= 1.5 else "**not met**"))

    def machine(self):
        def cmd(c):
            try:
                return subprocess.run(c, capture_output=True, text=True, cwd=REPO).stdout.strip()
            except OSError:
                return "?"
        model = "?"
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
        mem = "?"
        for ln in open("/proc/meminfo"):
            if ln.startswith("MemTotal"):
                mem = "%.1f GiB" % (int(ln.split()[1]) / 2**20)
        dirty = " (with uncommitted changes)" if cmd(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "cpu": model, "ram": mem,
            "kernel": os.uname().release,
            "skopeo": cmd(["skopeo", "--version"]),
            "docker-registry": cmd(["dpkg-query", "-W", "-f=${Version}", "docker-registry"]) or "?",
            "crossdock": cmd(["git", "rev-parse", "--short", "HEAD"]) + dirty,
            "rustc": cmd(["rustc", "--version"]),
            "load_start": self.load_start,
            "load_median_during": med([r["load1"] for r in self.runs]),
        }

    @staticmethod
    def walls(runs):
        return [r["wall_s"] for r in runs]

    @staticmethod
    def req(runs, role):
        tot = [r["registries"][role]["total"] for r in runs]
        return ("%d" % tot[0]) if len(set(tot)) == 1 else "%d–%d" % (min(tot), max(tot))

    @staticmethod
    def paired(num, den):
        """Median [min–max] of per-round ratios num/den."""
        by = {r["round"]: r["wall_s"] for r in den}
        rs = [r["wall_s"] / by[r["round"]] for r in num if r["round"] in by and by[r["round"]] > 0]
        return rs

    def report(self):
        m = self.machine()
        a = self.args
        L = []
        L.append("Machine: %d CPUs (%s), %s RAM, Linux %s; load average at the start %.2f, median during the "
                 "runs %.2f (other work on the machine competes with the registries for the CPUs)." % (
                     m["nproc"], m["cpu"], m["ram"], m["kernel"], m["load_start"][0], m["load_median_during"]))
        L.append("Date: %s. Versions: crossdock %s; %s; docker-registry %s; %s." % (
            m["date"], m["crossdock"], m["skopeo"], m["docker-registry"], m["rustc"]))
        L.append("Command: `bench/run.sh %s` (%.0f s from registry start to the last case).%s\n" % (
            a.cmdline, self.elapsed, (" Cases e, f, g over a modelled %g ms RTT link." % a.rtt_ms) if a.rtt_ms else ""))
        L.append("Wall and CPU in seconds, median [min–max]; RSS = peak of the client process (GNU time%s); "
                 "requests = access-log lines at A (source) / B (destination) per run; registry CPU = A / B "
                 "seconds, median. Ratios are medians of the per-round ratios (runs alternate).\n"
                 % ("" if TIME else "; **not installed: wait4 figures include the harness's own RSS**"))
        L.append("| case | tool | runs | wall s | CPU s | peak RSS MiB | requests A / B | registry CPU s A / B |")
        L.append("|---|---|---:|---|---:|---:|---|---|")
        res = self.results

        def row(case, tool, runs):
            if not runs:
                return
            L.append("| %s | %s | %d | %s | %.2f | %.1f | %s / %s | %.2f / %.2f |" % (
                case, tool, len(runs), fmt_range(self.walls(runs)), med([r["cpu_s"] for r in runs]),
                med([r["peak_mib"] for r in runs]), self.req(runs, "A"), self.req(runs, "B"),
                med([r["registries"]["A"]["cpu_s"] for r in runs]), med([r["registries"]["B"]["cpu_s"] for r in runs])))
        for case in ("a", "b", "c", "d-a", "d-b", "d-c", "e", "f"):
            if case in res:
                for tool in ["crossdock"] + [n for n, _ in a.compare] + ["skopeo", "raw"]:
                    row(case, tool, res[case].get(tool, []))
        if "g" in res:
            g = res["g"]
            row("g", "crossdock first sync", g["first"])
            row("g", "crossdock no-op sync", g["noop"])
            row("g", "crossdock 5 changed", g["changed"])
            row("g", "skopeo no-op sync", g["skopeo_noop"])
        for n, runs in res.get("h", {}).items():
            row("h %s tags" % n, "crossdock first sync", [r for r in runs if r["tool"] == "first"])
            row("h %s tags" % n, "crossdock no-op sync", [r for r in runs if r["tool"] == "noop"])

        if a.rtt_ms:
            self.link_table(L)
        L.append("\n| case | target | measured | verdict |")
        L.append("|---|---|---|---|")

        def ratio(case, num, den):
            rs = self.paired(res[case][num], res[case][den])
            return rs, fmt_range(rs, 2)

        def verdict(ok):
            return "met" if ok else "**not met**"
        for n, runs in res.get("h", {}).items():
            peak = max(r["peak_mib"] for r in runs)
            L.append("| h | peak RSS ≤ 32 MiB at %s tags (issue 12) | %.1f MiB | %s |" % (n, peak, verdict(peak <= 32)))
        if "a" in res:
            rs, s = ratio("a", "crossdock", "raw")
            L.append("| a | wall ≤ 1.05 × raw limit | crossdock / raw %s | %s |" % (s, verdict(med(rs) <= 1.05)))
            rs, s = ratio("a", "skopeo", "crossdock")
            L.append("| a | ≥ 1.4 × faster than skopeo | skopeo / crossdock %s | %s |" % (s, verdict(med(rs) >= 1.4)))
        if "b" in res:
            rs, s = ratio("b", "skopeo", "crossdock")
            L.append("| b | ≥ 1.5 × faster than skopeo | skopeo / crossdock %s (crossdock / raw %s) | %s |" % (
                s, ratio("b", "crossdock", "raw")[1], verdict(med(rs) >= 1.5)))
        if "c" in res:
            rss = [r["peak_mib"] for r in res["c"]["crossdock"]]
            L.append("| c | peak RSS ≤ 24 MiB | %s MiB (skopeo %s) | %s |" % (
                fmt_range(rss, 1), fmt_range([r["peak_mib"] for r in res["c"]["skopeo"]], 1), verdict(max(rss) <= 24)))
            rs, s = ratio("c", "skopeo", "crossdock")
            L.append("| c | ≥ 1.25 × faster than skopeo | skopeo / crossdock %s (crossdock / raw %s) | %s |" % (
                s, ratio("c", "crossdock", "raw")[1], verdict(med(rs) >= 1.25)))
        for case in ("d-a", "d-b", "d-c"):
            if case in res:
                got = {(r["registries"]["A"]["total"], r["registries"]["B"]["total"]) for r in res[case]["crossdock"]}
                L.append("| %s | exactly 1 request at each registry | A / B = %s | %s |" % (
                    case, ", ".join("%d / %d" % g for g in sorted(got)), verdict(got == {(1, 1)})))
        if "e" in res:
            rs, s = ratio("e", "skopeo", "crossdock")
            L.append("| e | ≥ 3 × faster than skopeo sync | skopeo / crossdock %s | %s |" % (s, verdict(med(rs) >= 3)))
        if "f" in res:
            tags = 50
            tot = max(r["registries"]["A"]["total"] + r["registries"]["B"]["total"] for r in res["f"]["crossdock"])
            L.append("| f | ≤ 2 requests per tag + tag list | %d requests for %d tags (skopeo %s) | %s |" % (
                tot, tags, self.req(res["f"]["skopeo"], "A") + " + " + self.req(res["f"]["skopeo"], "B"),
                verdict(tot <= 2 * tags + 1)))
            rs, s = ratio("f", "skopeo", "crossdock")
            L.append("| f | ≥ 5 × faster than skopeo sync | skopeo / crossdock %s | %s |" % (s, verdict(med(rs) >= 5)))
        if "g" in res:
            g = res["g"]
            first, noop, ch = med(self.walls(g["first"])), med(self.walls(g["noop"])), med(self.walls(g["changed"]))
            per_first = first / a.g_tags
            extra = (ch - noop) / 5
            # "Grows with the 5": the 5 changed tags add less than 1/20 of what copying all of them
            # cost (linear growth would be 5/1000 of it; the tag checks of a no-op are per tag).
            L.append("| g | time grows with the 5 changed, not the %d | first %.2f s, no-op %.2f s, 5 changed %.2f s: "
                     "%.0f ms per changed tag above the no-op (first sync: %.0f ms per tag) | %s |" % (
                         a.g_tags, first, noop, ch, extra * 1000, per_first * 1000,
                         verdict(ch - noop < (first - noop) / 20)))
        if a.compare:
            L.append("\n| case | compared | crossdock / it (paired) | skopeo / it (paired) |")
            L.append("|---|---|---|---|")
            for case in ("a", "b", "c", "d-a", "d-b", "d-c", "e", "f"):
                for name, _ in a.compare:
                    if case in res and res[case].get(name):
                        L.append("| %s | %s | %s | %s |" % (case, name, fmt_range(self.paired(
                            res[case]["crossdock"], res[case][name]), 2), fmt_range(self.paired(
                            res[case]["skopeo"], res[case][name]), 2)))
        text = "\n".join(L) + "\n"
        os.makedirs(a.out, exist_ok=True)
        with open(os.path.join(a.out, "results.md"), "w") as f:
            f.write(text)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump({"machine": m, "args": vars(a), "runs": self.runs}, f, indent=1, default=str)
        print(text)
        log("results: %s/results.md and results.json" % a.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs_pos", nargs="?", type=int, help="rounds per case (same as --runs)")
    ap.add_argument("--runs", type=int, default=5, help="rounds per case (default 5)")
    ap.add_argument("--runs-c", type=int, help="rounds for case c (default min(3, RUNS))")
    ap.add_argument("--warmup", type=int, default=1, help="unrecorded rounds before a, b, e (default 1)")
    ap.add_argument("--cases", default="abcdefg", help="which cases, e.g. abd (default abcdefg)")
    ap.add_argument("--d-images", default="abc", help="images re-imported in case d (default abc)")
    ap.add_argument("--c-size", default="1G", help="case c's layer size (default 1G)")
    ap.add_argument("--g-tags", type=int, default=1000, help="case g's tag count (default 1000)")
    ap.add_argument("--g-skopeo", type=int, default=1, help="skopeo no-op syncs of case g (default 1)")
    ap.add_argument("--h-tags", default="10000,100000", help="case h's tag counts (default 10000,100000)")
    ap.add_argument("--h-runs", type=int, default=1, help="no-op syncs per tag count in case h (default 1)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/crossdock as it is")
    ap.add_argument("--bin", help="the crossdock binary to measure (implies --no-build)")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=BIN",
                    help="also run this crossdock binary under NAME in cases a-f, alternating (repeatable)")
    ap.add_argument("--regbench", default=os.environ.get("REGBENCH", os.path.join(HERE, "regbench")),
                    help="regbench scripts (default: bench/regbench)")
    ap.add_argument("--tmp", default=os.environ.get("TMPDIR", "/tmp"), help="where the registries live")
    ap.add_argument("--img", default=os.environ.get("CROSSDOCK_BENCH_IMG", "/tmp/crossdock-bench-img"),
                    help="image cache (default /tmp/crossdock-bench-img)")
    ap.add_argument("--out", help="results folder (default /tmp/crossdock-bench-results/<time>)")
    ap.add_argument("--keep", action="store_true", help="keep the registries' storage and logs")
    ap.add_argument("--rtt-ms", type=float, help="run cases e, f and g over a modelled wide-area link of this "
                    "round-trip time (bench/wan_proxy.py in front of A and B; issue 18); default cases: efg")
    ap.add_argument("--inflight", type=int, default=8,
                    help="requests in flight in the round-trip bound (default 8: crossdock's max_concurrency)")
    args = ap.parse_args()
    if args.rtt_ms and "--cases" not in sys.argv:
        args.cases = "efg"
    if args.rtt_ms and set(args.cases) - set("efg"):
        sys.exit("--rtt-ms models the link for cases e, f and g only; give --cases with no others")
    if args.runs_pos is not None:
        args.runs = args.runs_pos
    args.cmdline = " ".join(sys.argv[1:])
    args.runs_c = args.runs_c or min(3, args.runs)
    args.c_bytes = parse_size(args.c_size)
    args.cases = [c for c in args.cases if c in "abcdefgh"]
    args.h_tags = [int(n) for n in args.h_tags.split(",") if n]
    args.compare = [(n, os.path.abspath(b)) for n, b in (c.split("=", 1) for c in args.compare)]
    args.d_images = [c for c in args.d_images if c in "abc"]
    args.out = args.out or os.path.join("/tmp/crossdock-bench-results",
                                        datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    b = Bench(args)
    try:
        b.run()
        b.report()
    finally:
        b.stop()


if __name__ == "__main__":
    sys.exit(main())
