#!/usr/bin/env bash
# images.sh -- the node guest's container images, built here without a registry or an image
# builder: OCI archives (oci.py: one uncompressed layer) that `ctr -n k8s.io images import`
# takes. Prints the directory holding them:
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
KEY=$(cat "$0" "$HERE/oci.py" "$BB" | sha256sum | cut -c1-16)
OUT=$CACHE/node-images/$KEY
if [ ! -s "$OUT/web.tar" ]; then
  mkdir -p "$CACHE/node-images"
  tmp=$(mktemp -d "$CACHE/node-images/.build-XXXXXX"); chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  t0=$(date +%s.%N)
  PYTHONPATH=$HERE python3 - "$BB" "$tmp" >"$tmp/build-info" <<'PY'
import os, sys
from oci import Archive, Layer

busybox, out = sys.argv[1], sys.argv[2]

def layer(extra_dirs):
    """busybox, its applets as symlinks, /etc/passwd, empty dirs."""
    lay = Layer()
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] + extra_dirs:
        lay.dir(d, 0o1777 if d == "tmp" else 0o755)
    lay.file("bin/busybox", open(busybox, "rb").read())
    for a in ["sh", "sleep", "httpd", "hostname", "cat", "ls", "ip", "wget"]:
        lay.symlink("bin/" + a, "busybox")
    lay.file("etc/passwd", b"root:x:0:0:root:/:/bin/sh\n", 0o644)
    lay.file("etc/group", b"root:x:0:\n", 0o644)
    return lay.bytes()

def image(name, cmd, extra_dirs, port=None):
    ref = f"localhost/testbed-{name}:1"
    archive = Archive()
    archive.image(ref, [layer(extra_dirs)], cmd=cmd, env=["PATH=/bin"], port=port)
    print(f"{ref} {archive.write(os.path.join(out, name + '.tar'))}")

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
