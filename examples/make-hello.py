#!/usr/bin/env python3
"""Writes examples/hello/: a tiny two-platform image (linux/amd64, linux/arm64) as an OCI image
layout folder, the image the first rule of config.example.toml mirrors out of the box.

    python3 examples/make-hello.py [OUTDIR]      (default: examples/hello beside this script)

Each platform has one uncompressed tar layer holding /hello.txt and an OCI config; an OCI index
ties them together. index.json names the index `1.0` and `latest`, and each platform manifest
`amd64` / `arm64` (single-platform images, for the example config's index rule).

Reproducible: the same bytes on every run, with any Python 3 (fixed timestamps, owners and
ordering; no compression, whose bytes could differ between zlib versions). tests/example.rs
regenerates the folder and checks it is identical to the committed one. Standard library only.
"""
import hashlib
import json
import os
import sys
import tarfile

CREATED = "2024-01-01T00:00:00Z"
MTIME = 1704067200  # CREATED as Unix time
PLATFORMS = [("linux", "amd64"), ("linux", "arm64")]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


def canonical(obj):
    """JSON bytes with a fixed key order and no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tar_with(name, data):
    """One regular file in a ustar archive: header, data padded to 512, two zero blocks."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    header = info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    pad = b"\0" * (-len(data) % 512)
    return header + data + pad + b"\0" * 1024


class Layout:
    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)

    def blob(self, media_type, data, **extra):
        """Writes a blob and returns its descriptor."""
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.root, "blobs", "sha256", digest), "wb") as f:
            f.write(data)
        return dict(mediaType=media_type, digest="sha256:" + digest, size=len(data), **extra)

    def write(self, name, data):
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "hello")
    layout = Layout(out)
    entries = []
    children = []
    for os_name, arch in PLATFORMS:
        text = f"Hello from crossdock's example image ({os_name}/{arch}).\n".encode()
        layer_bytes = tar_with("hello.txt", text)
        layer = layout.blob(OCI_LAYER, layer_bytes)
        config = layout.blob(OCI_CONFIG, canonical({
            "architecture": arch,
            "os": os_name,
            "created": CREATED,
            "config": {"Cmd": ["/hello.txt"], "Labels": {"org.opencontainers.image.title": "hello"}},
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
            "history": [{"created": CREATED, "created_by": "examples/make-hello.py"}],
        }))
        platform = {"architecture": arch, "os": os_name}
        manifest = layout.blob(OCI_MANIFEST, canonical({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        }))
        children.append(dict(manifest, platform=platform))
        entries.append(dict(manifest, annotations={REF_NAME: arch}))
    index = layout.blob(OCI_INDEX, canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children,
    }))
    tagged = [dict(index, annotations={REF_NAME: tag}) for tag in ("1.0", "latest")]
    layout.write("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
    layout.write("index.json", canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": tagged + entries,
    }))
    print(f"{out}: index {index['digest']}")


if __name__ == "__main__":
    main()
