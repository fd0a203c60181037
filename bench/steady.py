#!/usr/bin/env python3
"""Issue 18's steady-state benchmark: what a rule that changes nothing costs, per run.

    bench/steady.py [--bin target/release/crossdock] [--tags 1000,10000] [--conflicts keep,overwrite]

For each tag count N and each `on_conflict`, one rule over every tag of a repository of N tags
of one small image (t0 … tN-1), whose target already holds all N: every run is a no-op. It
measures, with the requests each registry's access log gained and the run's time:
  - `sync`: a `crossdock sync` (one-shot, no memory);
  - `daemon 1st`: the first run of a freshly started `crossdock run` (nothing remembered);
  - `daemon 2nd`: its second run (what it confirmed in the first is remembered);
  - `after restart`: the first run of the daemon started again.
The daemon's runs are found from `/status` (polled every 20 ms: a run has ended when
`last_run` changes). The N tags are written straight into both registries' filesystem storage, as
distribution 2.8 lays a tag out (see seed_tags in bench/run.py), after one push of the image
through the API (bench/push_layout.py). Registries: bench/regbench/start-registries.sh, loopback.
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
RB = os.path.join(HERE, "regbench")
LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(\w+) (\S+) HTTP/[\d.]+" (\d{3}) ')


def free_ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in ss]
    for s in ss:
        s.close()
    return ports


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="crossdock-steady.")
        self.base = os.path.join(self.work, "registries")
        self.pa, self.pb, self.pd = free_ports(3)
        subprocess.run([os.path.join(RB, "start-registries.sh"), "-d", self.base, str(self.pa), str(self.pb)],
                       check=True, stdout=subprocess.DEVNULL)
        img = os.path.join(self.work, "img")
        subprocess.run(["python3", os.path.join(RB, "make-image.py"), img, "-p", "1", "-l", "1", "-s", "1M",
                        "--tag", "t0"], check=True, stdout=subprocess.DEVNULL)
        self.img = img
        self.digest = json.load(open(os.path.join(img, "index.json")))["manifests"][0]["digest"]

    def close(self):
        subprocess.run([os.path.join(RB, "stop-registries.sh"), "-d", self.base, "--purge", str(self.pa),
                        str(self.pb)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.work, ignore_errors=True)

    def requests(self, port):
        with open(os.path.join(self.base, str(port), "registry.log"), errors="replace") as f:
            return sum(1 for ln in f if LINE.match(ln))

    def counts(self):
        return (self.requests(self.pa), self.requests(self.pb))

    def seed(self, port, repo, n):
        subprocess.run(["python3", os.path.join(HERE, "push_layout.py"), self.img, "127.0.0.1:%d/%s" % (port, repo)],
                       check=True, stdout=subprocess.DEVNULL)
        tags = os.path.join(self.base, str(port), "storage", "docker", "registry", "v2", "repositories", repo,
                            "_manifests", "tags")
        for i in range(1, n):
            t = os.path.join(tags, "t%d" % i)
            for link in (os.path.join(t, "current"), os.path.join(t, "index", "sha256", self.digest[7:])):
                os.makedirs(link, exist_ok=True)
                with open(os.path.join(link, "link"), "w") as f:
                    f.write(self.digest)

    def config(self, n, conflict, every):
        path = os.path.join(self.work, "config-%d-%s.toml" % (n, conflict))
        with open(path, "w") as f:
            f.write('[server]\nlisten = "127.0.0.1:%d"\n[[rules]]\nname = "steady"\n'
                    'source = "127.0.0.1:%d/s%d/app"\ntarget = "127.0.0.1:%d/s%d-%s/app"\n'
                    'on_conflict = "%s"\nschedule = "@every %ds"\n[rules.tags]\nall = true\n'
                    % (self.pd, self.pa, n, self.pb, n, conflict, conflict, every))
        return path

    def status(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % self.pd, timeout=5) as r:
                return json.load(r)["rules"].get("steady", {})
        except (OSError, ValueError):
            return None

    def finished(self, after, timeout=1800):
        """Waits until a run other than `after` (a `started` value or None) is recorded: when a
        run takes longer than the schedule's interval the next starts at once, so the end of a
        run is seen from `last_run` changing, not from `running` (up to 20 ms of the next run's
        requests may then be counted with this one)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            st = self.status()
            run = (st or {}).get("last_run")
            if st and run and run["started"] != after:
                return run
            time.sleep(0.02)
        sys.exit("no run finished within %d s" % timeout)

    def daemon(self, cfg):
        log = open(os.path.join(self.work, "daemon.log"), "a")
        p = subprocess.Popen([self.args.bin, "run", "--config", cfg, "--log-level", "info"],
                             stdout=subprocess.DEVNULL, stderr=log)
        return p

    def stop(self, p):
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)

    def case(self, n, conflict):
        every = 5 if conflict == "keep" else max(5, n // 100)
        self.seed(self.pa, "s%d/app" % n, n)
        self.seed(self.pb, "s%d-%s/app" % (n, conflict), n)
        cfg = self.config(n, conflict, every)
        rows = []
        before = self.counts()
        t0 = time.monotonic()
        out = subprocess.run([self.args.bin, "sync", "--config", cfg], capture_output=True, text=True)
        wall = time.monotonic() - t0
        if out.returncode != 0:
            sys.exit("sync failed:\n" + out.stdout + out.stderr)
        after = self.counts()
        rows.append(("sync", after[0] - before[0], after[1] - before[1], wall, next((ln for ln in out.stdout.splitlines() if ln.startswith("rule ")), "?").split(" — ")[-1]))
        for label_runs in (("daemon 1st", "daemon 2nd"), ("after restart",)):
            mark = self.counts()
            p = self.daemon(cfg)
            last = None
            for label in label_runs:
                run = self.finished(last)
                now = self.counts()
                rows.append((label, now[0] - mark[0], now[1] - mark[1], run["seconds"],
                             "%s, %d images" % (run["result"], run["images"])))
                mark, last = now, run["started"]
            self.stop(p)
        return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), "target", "release", "crossdock"))
    ap.add_argument("--tags", default="1000,10000")
    ap.add_argument("--conflicts", default="keep,overwrite")
    args = ap.parse_args()
    b = Bench(args)
    try:
        print("load average at the start: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        print("Requests: access-log lines at A (source) / B (target) per run. Time: the sync process's wall "
              "time; a daemon run's own duration (`/status` last_run.seconds).")
        print("| tags | on_conflict | run | requests A / B | time s | result |")
        print("|---:|---|---|---|---:|---|")
        for n in [int(x) for x in args.tags.split(",")]:
            for conflict in args.conflicts.split(","):
                for label, ra, rb, secs, res in b.case(n, conflict):
                    print("| %d | %s | %s | %d / %d | %.2f | %s |" % (n, conflict, label, ra, rb, secs, res),
                          flush=True)
        print("load average at the end: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    finally:
        b.close()


if __name__ == "__main__":
    main()
