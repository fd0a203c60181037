#!/usr/bin/env python3
"""Assembles crossdock's runtime image as an OCI image layout, without Docker or the internet.

    assemble.py --binary target/release/crossdock --out LAYOUT [--tag TAG] [--epoch SECONDS]

What deploy/Dockerfile builds on distroless/cc, made from this machine's files instead: one
layer holding the binary (/usr/local/bin/crossdock), the shared libraries it links and the
dynamic loader (as `ldd` lists them, at the paths the loader looks for them), the CA bundle
(/etc/ssl/certs/ca-certificates.crt), /etc/passwd and /etc/group with distroless' users
(root, nobody, nonroot = 65532), /etc/nsswitch.conf, /home/nonroot and /tmp. The image config
(entrypoint, cmd, user, port, stop signal, labels, environment) is deploy/image/image.json,
with `${VERSION}` replaced by the version in Cargo.toml; tests/image.rs checks that it declares
what the Dockerfile does.

Reproducible: the same inputs give the same digest. Every tar entry has the mtime
SOURCE_DATE_EPOCH (or --epoch), uid/gid 0 (65532 for /home/nonroot), a fixed mode and no
user or group names; entries are sorted by path; the layer is gzipped with mtime 0 and no file
name; every JSON document is written with sorted keys and no spaces. The binary, the libraries
and the CA bundle are the inputs: a new build of the binary or an upgraded libc is a new image.

Writes the layout into OUT (which must not exist or be empty), tagged TAG (Cargo.toml's version
by default), and prints the image manifest's digest. Stdlib only (Python 3.11, for tomllib).
"""
import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
NONROOT = 65532
# ELF e_machine -> OCI architecture.
ARCHITECTURES = {62: "amd64", 183: "arm64"}
PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n"
# glibc's default without this file consults DNS before /etc/hosts.
NSSWITCH = "passwd: files\ngroup: files\nhosts: files dns\n"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class Failure(Exception):
    """A problem with the inputs: printed as `error: ...`, exit status 1."""


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def architecture(binary: pathlib.Path) -> str:
    head = binary.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise Failure(f"{binary} is not an ELF executable")
    machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    if machine not in ARCHITECTURES:
        raise Failure(f"{binary}: ELF machine {machine} is not one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[machine]


def linked_libraries(binary: pathlib.Path) -> list[str]:
    """The absolute paths `ldd` resolves for the binary, the dynamic loader included."""
    run = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if "not a dynamic executable" in run.stdout + run.stderr:
        return []
    if run.returncode != 0:
        raise Failure(f"ldd {binary} failed: {run.stderr.strip()}")
    paths = []
    for line in run.stdout.splitlines():
        if "not found" in line:
            raise Failure(f"{binary} links a library this machine lacks: {line.strip()}")
        found = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if found:
            paths.append(found.group(1))
    return paths


class Layer:
    """Tar entries by path, written sorted with fixed metadata."""

    def __init__(self, epoch: int):
        self.epoch = epoch
        self.entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, owner: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.strip("/"))
        info.type, info.mode, info.mtime = kind, mode, self.epoch
        info.uid = info.gid = owner
        info.uname = info.gname = ""
        return info

    def directory(self, path: str, mode: int = 0o755, owner: int = 0):
        self.entries[path.strip("/")] = (self._info(path, tarfile.DIRTYPE, mode, owner), None)

    def file(self, path: str, data: bytes, mode: int = 0o644):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.directory(parent)
        info = self._info(path, tarfile.REGTYPE, mode, 0)
        info.size = len(data)
        self.entries[path.strip("/")] = (info, data)

    def tar(self) -> bytes:
        out = io.BytesIO()
        # USTAR: no PAX headers (which could carry times), and an error on a name too long.
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for path in sorted(self.entries):
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()


def root_filesystem(binary: pathlib.Path, ca_bundle: pathlib.Path, epoch: int) -> Layer:
    layer = Layer(epoch)
    layer.file("usr/local/bin/crossdock", binary.read_bytes(), 0o755)
    for lib in linked_libraries(binary):
        # The content of the file behind any symlinks, at the path the loader asks for.
        layer.file(lib, pathlib.Path(os.path.realpath(lib)).read_bytes(), 0o755)
    if not ca_bundle.is_file():
        raise Failure(f"no CA bundle at {ca_bundle} (Debian: apt-get install ca-certificates)")
    layer.file("etc/ssl/certs/ca-certificates.crt", ca_bundle.read_bytes())
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    layer.file("etc/nsswitch.conf", NSSWITCH.encode())
    layer.directory("home")
    layer.directory("home/nonroot", 0o700, NONROOT)
    layer.directory("tmp", 0o1777)
    return layer


def image_config(arch: str, diff_id: str, epoch: int) -> dict:
    version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    config = json.loads((HERE / "image.json").read_text())
    config["Labels"] = {k: v.replace("${VERSION}", version) for k, v in config["Labels"].items()}
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    created = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "deploy/image/assemble.py"}],
    }


def write_blob(layout: pathlib.Path, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.write_bytes(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def assemble(args) -> str:
    binary = pathlib.Path(args.binary)
    if not binary.is_file():
        raise Failure(f"no binary at {binary} (build it: cargo build --release --locked)")
    out = pathlib.Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise Failure(f"{out} exists and is not empty: remove it or choose another --out")
    arch = architecture(binary)
    tar = root_filesystem(binary, pathlib.Path(args.ca_bundle), args.epoch).tar()
    layer = gzip.compress(tar, compresslevel=6, mtime=0)
    (out / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = write_blob(out, canonical(image_config(arch, diff_id, args.epoch)), CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config,
        "layers": [write_blob(out, layer, LAYER)],
    }
    top = write_blob(out, canonical(manifest), MANIFEST)
    top["annotations"] = {"org.opencontainers.image.ref.name": args.tag}
    top["platform"] = {"architecture": arch, "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [top]}
    (out / "index.json").write_bytes(canonical(index))
    (out / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    return top["digest"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", required=True, help="the crossdock executable")
    parser.add_argument("--out", required=True, help="the OCI layout folder to write")
    parser.add_argument("--tag", help="the tag in the layout (default: Cargo.toml's version)")
    parser.add_argument("--epoch", type=int, help="timestamp of every file (SOURCE_DATE_EPOCH)")
    parser.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    args = parser.parse_args()
    if args.epoch is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
        if not epoch.isdigit():
            print("error: set SOURCE_DATE_EPOCH (seconds since 1970) or pass --epoch",
                  file=sys.stderr)
            return 1
        args.epoch = int(epoch)
    if args.tag is None:
        args.tag = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    try:
        print(assemble(args))
    except (Failure, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
