#!/usr/bin/env python3
"""Push tags of an OCI image layout into a registry, fast: the seeder for the many-tag cases.

    push_layout.py OCIDIR HOST:PORT/REPO [-j JOBS] [--tags T1,T2,...] [--auth USER:PASS]

Why not regbench's seed.sh: it runs one `skopeo copy` per tag (~0.4 s each), which is fine for
the 50-tag repository but takes minutes for case g's 1,000 tags. This does the same work with
keep-alive connections and JOBS parallel workers: every blob once (HEAD, then POST + one
monolithic PUT when missing), then every child manifest by digest, then each tag's top
manifest by tag (children before parents, as the registry requires), and finally checks with a
HEAD per tag that the registry serves the layout's exact digest and media type — the same check
seed.sh makes. Works on layouts written by regbench's make-image.py (OCI index per tag). Prints
one JSON line. Stdlib only; plain HTTP (the benchmark registries are loopback), with HTTP basic
auth on every request when --auth is given (htpasswd registries).
"""
import argparse
import base64
import concurrent.futures as cf
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
AUTH = {}


def conn(hostport):
    c = getattr(_local, "c", None)
    if c is None:
        host, port = hostport.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=120, blocksize=1 << 20)
        _local.c = c
    return c


def req(hostport, method, url, body=None, headers=None, ok=(200,)):
    headers = dict(headers or {}, **AUTH)
    c = conn(hostport)
    try:
        c.request(method, url, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
    except (http.client.HTTPException, OSError):
        # a keep-alive connection the registry closed: one fresh attempt
        c.close()
        c.request(method, url, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
    if r.status not in ok:
        raise RuntimeError("%s %s -> %d %s" % (method, url, r.status, data[:300]))
    return r, data


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("layout")
    ap.add_argument("dst", help="HOST:PORT/REPO")
    ap.add_argument("-j", "--jobs", type=int, default=8)
    ap.add_argument("--tags", help="comma-separated tags (default: every tag of the layout)")
    ap.add_argument("--auth", help="USER:PASS for HTTP basic auth")
    args = ap.parse_args()
    if args.auth:
        AUTH["Authorization"] = "Basic " + base64.b64encode(args.auth.encode()).decode()
    hp, repo = args.dst.split("/", 1)
    blobdir = os.path.join(args.layout, "blobs", "sha256")

    def read(d):
        with open(os.path.join(blobdir, d[7:]), "rb") as f:
            return f.read()

    entries = {}
    for m in json.load(open(os.path.join(args.layout, "index.json")))["manifests"]:
        t = m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        if t:
            entries[t] = m
    tags = args.tags.split(",") if args.tags else sorted(entries)
    missing = [t for t in tags if t not in entries]
    if missing:
        sys.exit("tags not in %s: %s" % (args.layout, missing))

    t0 = time.monotonic()
    blobs = {}      # digest -> size
    children = {}   # digest -> (bytes, mediaType)
    tops = []       # (tag, bytes, mediaType, digest)
    for t in tags:
        e = entries[t]
        top = read(e["digest"])
        tops.append((t, top, e["mediaType"], e["digest"]))
        tj = json.loads(top)
        mans = []
        if "manifests" in tj:
            for c in tj["manifests"]:
                data = read(c["digest"])
                children[c["digest"]] = (data, c["mediaType"])
                mans.append(json.loads(data))
        else:
            mans.append(tj)
        for m in mans:
            for b in [m["config"]] + m["layers"]:
                blobs[b["digest"]] = b["size"]

    def upload(item):
        digest, size = item
        r, _ = req(hp, "HEAD", "/v2/%s/blobs/%s" % (repo, digest), ok=(200, 404))
        if r.status == 200:
            return 0
        r, _ = req(hp, "POST", "/v2/%s/blobs/uploads/" % repo, ok=(202,))
        loc = urllib.parse.urlsplit(r.getheader("Location"))
        url = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
        req(hp, "PUT", url, body=read(digest), ok=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        return size

    def put_manifest(ref, data, mt):
        req(hp, "PUT", "/v2/%s/manifests/%s" % (repo, ref), body=data, ok=(201,),
            headers={"Content-Type": mt})

    def check(tag, digest, mt):
        r, _ = req(hp, "HEAD", "/v2/%s/manifests/%s" % (repo, tag), headers={"Accept": ACCEPT})
        got = (r.getheader("Docker-Content-Digest"), r.getheader("Content-Type"))
        if got != (digest, mt):
            raise RuntimeError("%s/%s:%s serves %s, the layout has %s" % (hp, repo, tag, got, (digest, mt)))

    with cf.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        moved = sum(ex.map(upload, sorted(blobs.items(), key=lambda kv: -kv[1])))
        list(ex.map(lambda kv: put_manifest(kv[0], *kv[1]), children.items()))
        list(ex.map(lambda t: put_manifest(t[0], t[1], t[2]), tops))
        list(ex.map(lambda t: check(t[0], t[3], t[2]), tops))
    print(json.dumps({"dst": args.dst, "tags": len(tops), "blobs": len(blobs), "bytes_uploaded": moved,
                      "manifests": len(children) + len(tops), "wall_s": round(time.monotonic() - t0, 3)}))


if __name__ == "__main__":
    sys.exit(main())
