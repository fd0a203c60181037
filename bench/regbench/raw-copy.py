#!/usr/bin/env python3
"""'Physical limit' reference: move an image's blobs into a registry as plainly as possible.

    raw-copy.py (--src-layout OCIDIR | --src HOST:PORT/REPO) --tag TAG --dst HOST:PORT/REPO
                [--fresh] [-j JOBS] [--no-manifests] [--chunk BYTES] [--count-only]

Collects every blob of TAG (index -> manifests -> config + layers) and uploads each one with the
minimal monolithic protocol: POST /v2/REPO/blobs/uploads/ (202 + Location), then one
PUT <Location>&digest=sha256:... carrying the whole blob (Content-Length, no chunking), JOBS
uploads in parallel (default 4), one keep-alive connection per worker. Then (unless
--no-manifests) PUTs the platform manifests and the index under TAG, so the result is a complete
image like skopeo's. No HEAD/existence checks, no digest verification on the client side.

--src-layout: blobs are read from the OCI layout on disk (page cache: upload-only limit).
--src HOST:PORT/REPO: each blob is streamed GET from the source registry straight into the PUT
   (registry-to-registry limit: the same bytes skopeo moves, with nothing else done).
--fresh: appends -N to the destination repo (counter file $REGBENCH_COUNTER-raw, default
   /tmp/regbench/counter-raw), so every
   run uploads into a repository that has none of the blobs.
Prints one JSON line: blobs, bytes, wall_s, MB_s (MB = 10^6 bytes). Stdlib only.
"""
import argparse
import concurrent.futures as cf
import fcntl
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_local = threading.local()


def conn(hostport, key, blocksize):
    c = getattr(_local, key, None)
    if c is None:
        host, port = hostport.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=300, blocksize=blocksize)
        setattr(_local, key, c)
    return c


def req(c, method, url, body=None, headers=None, ok=(200,)):
    c.request(method, url, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if r.status not in ok:
        raise RuntimeError("%s %s -> %d %s" % (method, url, r.status, data[:300]))
    return r, data


class Source:
    def __init__(self, args):
        self.args = args
        if args.src_layout:
            self.layout = args.src_layout
        else:
            self.hostport, self.repo = args.src.split("/", 1)

    def manifest(self, ref):
        if self.args.src_layout:
            if ref.startswith("sha256:"):
                d = ref
            else:
                idx = json.load(open(os.path.join(self.layout, "index.json")))
                d = [m["digest"] for m in idx["manifests"]
                     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref][0]
            data = open(os.path.join(self.layout, "blobs", "sha256", d[7:]), "rb").read()
            return data, json.loads(data).get("mediaType")
        c = conn(self.hostport, "src", self.args.chunk)
        r, data = req(c, "GET", "/v2/%s/manifests/%s" % (self.repo, ref), headers={"Accept": ACCEPT})
        return data, r.getheader("Content-Type")

    def open_blob(self, digest, size):
        """Returns a file-like object with read(n) for the blob body, and a close callable."""
        if self.args.src_layout:
            f = open(os.path.join(self.layout, "blobs", "sha256", digest[7:]), "rb")
            return f, f.close
        c = conn(self.hostport, "src", self.args.chunk)
        c.request("GET", "/v2/%s/blobs/%s" % (self.repo, digest))
        r = c.getresponse()
        if r.status != 200:
            raise RuntimeError("GET blob %s -> %d" % (digest, r.status))
        return r, r.read  # draining read() leaves the keep-alive connection reusable


def next_counter(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            n = int(open(path).read().strip()) + 1
        except (OSError, ValueError):
            n = 1
        open(path, "w").write(str(n))
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--src-layout")
    g.add_argument("--src")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("-j", "--jobs", type=int, default=4)
    ap.add_argument("--no-manifests", action="store_true")
    ap.add_argument("--chunk", type=int, default=1 << 20, help="socket read/write block size")
    ap.add_argument("--count-only", action="store_true", help="print blobs/bytes of TAG, upload nothing")
    args = ap.parse_args()
    dst_hp, dst_repo = args.dst.split("/", 1)
    if args.fresh:
        dst_repo += "-%d" % next_counter(os.environ.get("REGBENCH_COUNTER", "/tmp/regbench/counter") + "-raw")
    src = Source(args)
    t0 = time.monotonic()

    top, top_mt = src.manifest(args.tag)
    topj = json.loads(top)
    children = []  # (digest, bytes, mediaType)
    if "manifests" in topj:
        for m in topj["manifests"]:
            data, _ = src.manifest(m["digest"])
            children.append((m["digest"], data, m["mediaType"]))
        mans = [json.loads(d) for _, d, _ in children]
    else:
        mans = [topj]
    blobs = {}
    for m in mans:
        for b in [m["config"]] + m["layers"]:
            blobs[b["digest"]] = b["size"]

    if args.count_only:
        print(json.dumps({"blobs": len(blobs), "bytes": sum(blobs.values()), "manifests": len(children) + 1}))
        return 0

    def upload(item):
        digest, size = item
        c = conn(dst_hp, "dst", args.chunk)
        r, _ = req(c, "POST", "/v2/%s/blobs/uploads/" % dst_repo, ok=(202,))
        loc = urllib.parse.urlsplit(r.getheader("Location"))
        url = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
        body, close = src.open_blob(digest, size)
        try:
            req(c, "PUT", url, body=body, ok=(201,),
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
        finally:
            close()
        return size

    # biggest first, so the pool does not end on one large straggler
    items = sorted(blobs.items(), key=lambda kv: -kv[1])
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        total = sum(ex.map(upload, items))
    if not args.no_manifests:
        c = conn(dst_hp, "dst", args.chunk)
        for d, data, mt in children:
            req(c, "PUT", "/v2/%s/manifests/%s" % (dst_repo, d), body=data,
                headers={"Content-Type": mt}, ok=(201,))
        req(c, "PUT", "/v2/%s/manifests/%s" % (dst_repo, args.tag), body=top,
            headers={"Content-Type": top_mt or topj.get("mediaType")}, ok=(201,))
    wall = time.monotonic() - t0
    print(json.dumps({"dst": "%s/%s:%s" % (dst_hp, dst_repo, args.tag), "blobs": len(blobs),
                      "bytes": total, "wall_s": round(wall, 3), "MB_s": round(total / wall / 1e6, 1)}))


if __name__ == "__main__":
    sys.exit(main())
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/raw-copy.py beside the crossdock repository.
