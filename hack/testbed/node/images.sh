#!/usr/bin/env bash
# images.sh -- the node guest's container images, built here without a registry or an image
# builder: OCI archives (oci-layout + index.json + sha256 blobs, one uncompressed layer) that
# `ctr -n k8s.io images import` takes. Prints the directory holding them:
#   pause.tar  localhost/testbed-pause:1  the pod sandbox (busybox sh waiting for a signal)
#   web.tar    localhost/testbed-web:1    busybox httpd on :8080 serving the pod's hostname
# Made from the guest root's static busybox; cached by content (this script + that busybox), so
# a second run only prints the path. Needs the guest root (hack/testbed/guest-root.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
ROOT=$(TESTBED_GUEST_ROOT_NO_BUILD=1 "$HERE/../guest-root.sh" path)
BB=$ROOT/usr/bin/busybox
[ -x "$BB" ] || { echo "images.sh: no static busybox in $ROOT (busybox-static)" >&2; exit 1; }
KEY=$(cat "$0" "$BB" | sha256sum | cut -c1-16)
OUT=$CACHE/node-images/$KEY
if [ ! -s "$OUT/web.tar" ]; then
  mkdir -p "$CACHE/node-images"
  tmp=$(mktemp -d "$CACHE/node-images/.build-XXXXXX"); chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  t0=$(date +%s.%N)
  python3 - "$BB" "$tmp" >"$tmp/build-info" <<'PY'
import hashlib, io, json, os, sys, tarfile

busybox, out = sys.argv[1], sys.argv[2]

def layer(extra_dirs):
    """One deterministic layer: busybox, its applets as symlinks, /etc/passwd, empty dirs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind, data=b"", mode=0o755, target=""):
            i = tarfile.TarInfo(name)
            i.mode, i.mtime, i.uid, i.gid, i.type = mode, 0, 0, 0, kind
            if kind == tarfile.SYMTYPE:
                i.linkname = target
            i.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] + extra_dirs:
            add(d, tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, open(busybox, "rb").read())
        for a in ["sh", "sleep", "httpd", "hostname", "cat", "ls", "ip", "wget"]:
            add("bin/" + a, tarfile.SYMTYPE, target="busybox")
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/:/bin/sh\n", 0o644)
        add("etc/group", tarfile.REGTYPE, b"root:x:0:\n", 0o644)
    return buf.getvalue()

def image(name, cmd, extra_dirs, port=None):
    blobs = {}
    def blob(data):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return "sha256:" + d
    lay = layer(extra_dirs)
    cfg = {"architecture": "amd64", "os": "linux",
           "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
           "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(lay).hexdigest()]}}
    if port:
        cfg["config"]["ExposedPorts"] = {f"{port}/tcp": {}}
    cfgb = json.dumps(cfg, sort_keys=True).encode()
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfgb), "size": len(cfgb)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob(lay), "size": len(lay)}]}
    manb = json.dumps(man, sort_keys=True).encode()
    ref = f"localhost/testbed-{name}:1"
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": man["mediaType"], "digest": blob(manb), "size": len(manb),
                            "platform": {"architecture": "amd64", "os": "linux"},
                            # containerd takes the full name from its own annotation
                            "annotations": {"io.containerd.image.name": ref,
                                            "org.opencontainers.image.ref.name": "1"}}]}
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index, sort_keys=True).encode()}
    for d, data in blobs.items():
        files["blobs/sha256/" + d] = data
    with tarfile.open(os.path.join(out, name + ".tar"), "w", format=tarfile.PAX_FORMAT) as t:
        for d in ["blobs", "blobs/sha256"]:
            i = tarfile.TarInfo(d); i.type, i.mode, i.mtime = tarfile.DIRTYPE, 0o755, 0; t.addfile(i)
        for n, data in sorted(files.items()):
            i = tarfile.TarInfo(n); i.size, i.mode, i.mtime = len(data), 0o644, 0
            t.addfile(i, io.BytesIO(data))
    print(f"{ref} {os.path.getsize(os.path.join(out, name + '.tar'))}")

# PID 1 of a container ignores the signals it does not handle: both stop on SIGTERM, so deleting a
# pod does not wait out its grace period. The sandbox only holds the pod's namespaces.
image("pause", ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"], [])
image("web", ["/bin/sh", "-c", "trap 'exit 0' TERM INT; hostname >/www/index.html && httpd -f -p 8080 -h /www & wait $!"],
      ["www"], 8080)
PY
  python3 -c "print(f'built in {$(date +%s.%N) - $t0:.2f}s')" >>"$tmp/build-info"
  rm -rf "$OUT"; mv "$tmp" "$OUT"
  trap - EXIT
fi
echo "$OUT"
