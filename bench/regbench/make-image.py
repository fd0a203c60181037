#!/usr/bin/env python3
"""Write a synthetic multi-arch image into an OCI image layout directory (stdlib only).

    make-image.py OUTDIR [-p PLATFORMS] [-l LAYERS] [-s SIZE] [--mode tar-gzip|random]
                  [--format oci|docker] [--tag TAG] [--tags N] [--seed N] [--gzip-level 0-9]

Each tag gets an image index (OCI: application/vnd.oci.image.index.v1+json; --format docker:
application/vnd.docker.distribution.manifest.list.v2+json) with PLATFORMS entries taken in order
from linux/amd64, linux/arm64/v8, linux/arm/v7, linux/ppc64le, linux/s390x, linux/386,
linux/arm/v6, linux/riscv64, linux/mips64le. Each platform has its own config blob and LAYERS
distinct layers of about SIZE bytes (suffix K/M/G = KiB/MiB/GiB; default 16M).

--mode tar-gzip (default): each layer is a real tar (one regular file of pseudo-random bytes)
   gzip-compressed; the config's rootfs.diff_ids are the sha256 of the uncompressed tars.
   Default --gzip-level 0 (valid gzip made of stored deflate blocks: fast; random data does not
   compress anyway, level 1 runs at only ~35 MB/s here).
--mode random: each layer is SIZE random bytes, labelled as tar+gzip (not decompressible);
   diff_ids are set to the blob digest. Registries and digest-preserving copies don't look inside.

--format docker also writes, per tag, a `dir:` transport directory OUTDIR/dir/TAG (hard links to
the blobs): skopeo's oci: transport refuses an index.json entry whose mediaType is a Docker
manifest list, but `skopeo copy --all --preserve-digests dir:OUTDIR/dir/TAG docker://...` pushes
the manifest list unchanged (seed.sh does this automatically).

Content is deterministic (seeded PRNG): same arguments => same digests. --tags N writes N
independent images tagged TAG-0 .. TAG-(N-1) (distinct seeds) into the same layout.
Prints one JSON summary line (tags, index digests, blob count, total bytes) on stdout.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile

PLATFORMS = [
    ("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7"),
    ("linux", "ppc64le", None), ("linux", "s390x", None), ("linux", "386", None),
    ("linux", "arm", "v6"), ("linux", "riscv64", None), ("linux", "mips64le", None),
]
MT = {
    "oci": dict(index="application/vnd.oci.image.index.v1+json",
                manifest="application/vnd.oci.image.manifest.v1+json",
                config="application/vnd.oci.image.config.v1+json",
                layer="application/vnd.oci.image.layer.v1.tar+gzip"),
    "docker": dict(index="application/vnd.docker.distribution.manifest.list.v2+json",
                   manifest="application/vnd.docker.distribution.manifest.v2+json",
                   config="application/vnd.docker.container.image.v1+json",
                   layer="application/vnd.docker.image.rootfs.diff.tar.gzip"),
}
CHUNK = 1 << 20
CREATED = "2024-01-01T00:00:00Z"


def parse_size(s):
    s = s.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    if s[-1:] in "KMG":
        s = s[:-1]
    return int(float(s) * mult)


class Layout:
    def __init__(self, root):
        self.root = root
        self.blobdir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobdir, exist_ok=True)
        self.blobs = {}  # digest -> size

    def put_bytes(self, data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        path = os.path.join(self.blobdir, d[7:])
        if not os.path.exists(path):
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        self.blobs[d] = len(data)
        return d, len(data)

    def put_stream(self, writer_fn):
        """writer_fn(fileobj) writes the blob; returns (digest, size)."""
        tmp = os.path.join(self.blobdir, ".tmp-%d" % os.getpid())
        with open(tmp, "wb") as raw:
            hw = _HashWriter(raw)
            writer_fn(hw)
        d = "sha256:" + hw.h.hexdigest()
        os.replace(tmp, os.path.join(self.blobdir, d[7:]))
        self.blobs[d] = hw.n
        return d, hw.n


class _HashWriter(io.RawIOBase):
    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def writable(self):
        return True

    def write(self, b):
        self.h.update(b)
        self.f.write(b)
        self.n += len(b)
        return len(b)


def rand_chunks(rng, n):
    while n > 0:
        k = min(CHUNK, n)
        yield rng.randbytes(k)
        n -= k


def make_layer(layout, rng, size, mode, level, name):
    """Returns (digest, size, diff_id)."""
    if mode == "random":
        d, n = layout.put_stream(lambda f: [f.write(c) for c in rand_chunks(rng, size)])
        return d, n, d
    # tar: 512 header + payload padded to 512 + 1024 end-of-archive; gzip adds ~5 B per 64 KiB
    payload = max(0, (size - 512 - 1024) // 512 * 512)
    diff = hashlib.sha256()

    def write(f):
        gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=f, mtime=0)

        class Tee(io.RawIOBase):
            def writable(self):
                return True

            def write(self, b):
                diff.update(b)
                gz.write(b)
                return len(b)

        tee = Tee()
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = payload, 1704067200, 0o644, "root", "root"
        tee.write(ti.tobuf(format=tarfile.USTAR_FORMAT))
        for c in rand_chunks(rng, payload):
            tee.write(c)
        tee.write(b"\0" * (1024))  # payload is a multiple of 512, so no padding needed
        gz.close()

    d, n = layout.put_stream(write)
    return d, n, "sha256:" + diff.hexdigest()


def canon(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def make_image(layout, args, mt, seed, tagname):
    descs = []
    for p in range(args.platforms):
        os_, arch, variant = PLATFORMS[p]
        layers, diff_ids = [], []
        for i in range(args.layers):
            rng = random.Random("%s/%d/%d/%d/%s" % (seed, p, i, args.size, args.mode))
            d, n, diff = make_layer(layout, rng, args.size, args.mode, args.gzip_level,
                                    "regbench/%s-p%d-l%d.bin" % (tagname, p, i))
            layers.append({"mediaType": mt["layer"], "size": n, "digest": d})
            diff_ids.append(diff)
        plat = {"architecture": arch, "os": os_}
        if variant:
            plat["variant"] = variant
        cfg = dict(plat)
        cfg.update({
            "created": CREATED,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                       "Cmd": ["/bin/sh"],
                       "Labels": {"regbench.tag": tagname, "regbench.seed": str(seed)}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": CREATED, "created_by": "regbench make-image.py layer %d" % i}
                        for i in range(args.layers)],
        })
        cd, cn = layout.put_bytes(canon(cfg))
        man = {"schemaVersion": 2, "mediaType": mt["manifest"],
               "config": {"mediaType": mt["config"], "size": cn, "digest": cd},
               "layers": layers}
        md, mn = layout.put_bytes(canon(man))
        descs.append({"mediaType": mt["manifest"], "size": mn, "digest": md, "platform": plat})
    idx = {"schemaVersion": 2, "mediaType": mt["index"], "manifests": descs}
    return layout.put_bytes(canon(idx))


def write_dir_transport(root, tag, index_digest):
    """containers/image `dir:` layout: version, manifest.json (the list), HEX.manifest.json per
    instance, blobs as HEX. Hard links into OUTDIR/blobs/sha256."""
    bd = os.path.join(root, "blobs", "sha256")
    dd = os.path.join(root, "dir", tag)
    if os.path.isdir(dd):
        for n in os.listdir(dd):
            os.unlink(os.path.join(dd, n))
    os.makedirs(dd, exist_ok=True)
    with open(os.path.join(dd, "version"), "w") as f:
        f.write("Directory Transport Version: 1.1\n")

    def link(hexd, name):
        os.link(os.path.join(bd, hexd), os.path.join(dd, name))

    link(index_digest[7:], "manifest.json")
    with open(os.path.join(bd, index_digest[7:])) as f:
        lst = json.load(f)
    for m in lst["manifests"]:
        h = m["digest"][7:]
        link(h, h + ".manifest.json")
        with open(os.path.join(bd, h)) as f:
            man = json.load(f)
        for b in [man["config"]] + man["layers"]:
            if not os.path.exists(os.path.join(dd, b["digest"][7:])):
                link(b["digest"][7:], b["digest"][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("-p", "--platforms", type=int, default=3)
    ap.add_argument("-l", "--layers", type=int, default=4)
    ap.add_argument("-s", "--size", type=parse_size, default=16 << 20, help="layer size, e.g. 16M, 64K")
    ap.add_argument("--mode", choices=["tar-gzip", "random"], default="tar-gzip")
    ap.add_argument("--format", choices=["oci", "docker"], default="oci")
    ap.add_argument("--gzip-level", type=int, default=0)
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--tags", type=int, default=0, help="write N images tagged TAG-0..TAG-(N-1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not 1 <= args.platforms <= len(PLATFORMS):
        ap.error("--platforms must be 1..%d" % len(PLATFORMS))
    mt = MT[args.format]
    layout = Layout(args.outdir)
    with open(os.path.join(args.outdir, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    ipath = os.path.join(args.outdir, "index.json")
    try:
        with open(ipath) as f:
            top = json.load(f)
    except (OSError, ValueError):
        top = {"schemaVersion": 2, "manifests": []}
    tags = ["%s-%d" % (args.tag, i) for i in range(args.tags)] if args.tags else [args.tag]
    out = {}
    for ti, tag in enumerate(tags):
        seed = "%d/%s" % (args.seed, tag) if args.tags else str(args.seed)
        d, n = make_image(layout, args, mt, seed, tag)
        top["manifests"] = [m for m in top["manifests"]
                            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        top["manifests"].append({"mediaType": mt["index"], "size": n, "digest": d,
                                 "annotations": {"org.opencontainers.image.ref.name": tag}})
        out[tag] = d
    with open(ipath, "w") as f:
        json.dump(top, f, indent=1)
    if args.format == "docker":
        for tag, d in out.items():
            write_dir_transport(args.outdir, tag, d)
    total = sum(layout.blobs.values())
    print(json.dumps({"layout": args.outdir, "format": args.format, "mode": args.mode,
                      "platforms": args.platforms, "layers": args.layers, "layer_size": args.size,
                      "tags": out, "blobs": len(layout.blobs), "total_bytes": total}))


if __name__ == "__main__":
    sys.exit(main())
# Copied unchanged (but for this last line) from regbench: ../shared/regbench/make-image.py beside the crossdock repository.
