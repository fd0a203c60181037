#!/usr/bin/env python3
"""Count the HTTP requests that registries logged while a command ran.

    reqcount.py [-d BASEDIR] [--name LABEL] PORT[,PORT...] -- COMMAND [ARG ...]
    reqcount.py --since-file OFFSETS.json [-d BASEDIR] PORT[,PORT...]     (count since a mark)
    reqcount.py --mark OFFSETS.json [-d BASEDIR] PORT[,PORT...]           (write a mark)

Reads the access-log lines (Apache combined format, written by distribution's http handler)
that were appended to BASEDIR/PORT/registry.log while COMMAND ran, and prints per registry the
count per method, per status, and per (method, route kind), plus the command's wall time, CPU
and peak RSS (wait4) and each registry process's CPU seconds (/proc/PID/stat) over the run.
Stdlib only. BASEDIR defaults to /tmp/regbench/registries.
"""
import collections, json, os, re, subprocess, sys, time

LINE = re.compile(r'^\S+ \S+ \S+ \[[^\]]+\] "(\w+) (\S+) HTTP/[\d.]+" (\d{3}) ')


def kind(uri):
    p = uri.split("?", 1)[0]
    q = uri.split("?", 1)[1] if "?" in uri else ""
    if p in ("/v2/", "/v2"):
        return "ping"
    if p.endswith("/tags/list"):
        return "tags"
    if "/_catalog" in p:
        return "catalog"
    if "/manifests/" in p:
        return "manifest"
    if "/blobs/uploads" in p:
        return "upload-mount" if "mount=" in q else "upload"
    if "/blobs/" in p:
        return "blob"
    if "/referrers/" in p:
        return "referrers"
    return "other"


def cpu_s(base, port):
    """utime+stime (s) of the registry process whose PID is in BASEDIR/PORT/registry.pid."""
    try:
        pid = open(os.path.join(base, port, "registry.pid")).read().strip()
        f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def sizes(base, ports):
    return {p: os.path.getsize(os.path.join(base, p, "registry.log")) for p in ports}


def count(base, offsets):
    res = {}
    for p, off in offsets.items():
        with open(os.path.join(base, p, "registry.log"), "rb") as f:
            f.seek(off)
            data = f.read().decode("utf-8", "replace")
        meth, st, mk = collections.Counter(), collections.Counter(), collections.Counter()
        for ln in data.splitlines():
            m = LINE.match(ln)
            if not m:
                continue
            meth[m.group(1)] += 1
            st[m.group(3)] += 1
            mk["%s %s" % (m.group(1), kind(m.group(2)))] += 1
        res[p] = {"total": sum(meth.values()), "by_method": dict(sorted(meth.items())),
                  "by_status": dict(sorted(st.items())), "by_method_route": dict(sorted(mk.items()))}
    return res


def main(argv):
    base = "/tmp/regbench/registries"
    name, mark, since = None, None, None
    while argv and argv[0].startswith("-") and argv[0] != "--":
        o = argv.pop(0)
        if o == "-d":
            base = argv.pop(0)
        elif o == "--name":
            name = argv.pop(0)
        elif o == "--mark":
            mark = argv.pop(0)
        elif o == "--since-file":
            since = argv.pop(0)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    ports = argv.pop(0).split(",")
    if mark:
        json.dump(sizes(base, ports), open(mark, "w"))
        return 0
    if since:
        offs = json.load(open(since))
        print(json.dumps({"name": name, "registries": count(base, {p: offs[p] for p in ports})}, indent=1))
        return 0
    if not argv or argv[0] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[1:]
    offs = sizes(base, ports)
    cpu0 = {p: cpu_s(base, p) for p in ports}
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=sys.stderr)  # keep our stdout for the JSON only
    _, status, ru = os.wait4(p.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    time.sleep(0.3)  # let the registries flush their last log lines
    res = count(base, offs)
    for port in ports:
        c1 = cpu_s(base, port)
        res[port]["registry_cpu_s"] = round(c1 - cpu0[port], 2) if c1 is not None and cpu0[port] is not None else None
    print(json.dumps({"name": name, "rc": rc, "wall_s": round(wall, 3),
                      "client_cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
                      "client_peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
                      "registries": res}, indent=1))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/reqcount.py beside the crossdock repository.
