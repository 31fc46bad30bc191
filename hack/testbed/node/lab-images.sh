#!/usr/bin/env bash
# lab-images.sh AGENT_BIN OPERATOR_BIN -- the project's own images for the node guest, built
# without a registry or an image builder (oci.py), from the binaries the tests built. Prints the
# path of one OCI archive holding the three (`ctr -n k8s.io images import` takes them all; the
# base layer is stored once), then one line per image: `<ref> <layers> <bytes of its layers>`.
#
#   localhost/bgpvpn-frr:lab       FRR 10 from Debian's packages (the upstream image cannot be
#                                  pulled here), started like upstream's: /usr/lib/frr/docker-start
#   localhost/bgpvpn-agent:lab     the same FRR layer (the agent applies with that FRR's own
#                                  frr-reload.py and vtysh) + the agent
#   localhost/bgpvpn-operator:lab  the same base + the operator
#
# The chart's production defaults stay the upstream FRR image and the images the Dockerfiles
# build; the lab points the chart's values at these. The base is a Debian root of FRR,
# frr-reload.py and iproute2 (guest-root.sh with ROOT_KIND=frr-image: built once, about 2 min,
# needs root and the host's network). The binaries are stripped of debug information. Cached by
# content (this script, oci.py, the base root, the binaries); older archives are removed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgpvpn-operator}
AGENT_BIN=${1:?usage: $0 AGENT_BIN OPERATOR_BIN}
OPERATOR_BIN=${2:?usage: $0 AGENT_BIN OPERATOR_BIN}
log() { printf '[lab-images %4ss] %s\n' "$SECONDS" "$*" >&2; }
for b in "$AGENT_BIN" "$OPERATOR_BIN"; do [ -x "$b" ] || { log "ERROR: $b is not an executable"; exit 1; }; done
ROOT=$(ROOT_KIND=frr-image "$HERE/../guest-root.sh" path)
DIR=$CACHE/lab-images
mkdir -p "$DIR"
exec 9>"$DIR/.lock"; flock 9
KEY=$( { cat "$0" "$HERE/oci.py"; echo "$ROOT"; sha256sum "$AGENT_BIN" "$OPERATOR_BIN" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
OUT=$DIR/$KEY
if [ ! -s "$OUT/images.tar" ]; then
  t0=$(date +%s.%N)
  tmp=$(mktemp -d "$DIR/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  objcopy --strip-debug "$AGENT_BIN" "$tmp/bgpvpn-agent"
  objcopy --strip-debug "$OPERATOR_BIN" "$tmp/bgpvpn-operator"
  PYTHONPATH=$HERE python3 - "$ROOT" "$tmp" >"$tmp/build-info" <<'PY'
import os, sys
from oci import Archive, Layer

root, out = sys.argv[1], sys.argv[2]
base = Layer()
# the root as the image's file system: the mount points stay, empty
base.tree(root, skip={"proc", "sys", "dev", "run", "tmp", "mnt", "srv"})
base = base.bytes()

# Like upstream's docker-start: watchfrr, in the foreground, starts and watches the daemons the
# daemons file lists (the chart's router script installs that file first).
frr = Layer()
for d in ["usr", "usr/lib", "usr/lib/frr"]:
    frr.dir(d)
frr.file("usr/lib/frr/docker-start",
         b"#!/bin/bash\nset -e\nsource /usr/lib/frr/frrcommon.sh\nexec /usr/lib/frr/watchfrr $(daemon_list)\n")
frr = frr.bytes()

def binary(name):
    lay = Layer()
    for d in ["usr", "usr/local", "usr/local/bin"]:
        lay.dir(d)
    lay.file("usr/local/bin/" + name, open(os.path.join(out, name), "rb").read())
    return lay.bytes()

archive = Archive()
images = [
    ("localhost/bgpvpn-frr:lab", [base, frr], dict(cmd=["/usr/lib/frr/docker-start"])),
    ("localhost/bgpvpn-agent:lab", [base, frr, binary("bgpvpn-agent")],
     dict(entrypoint=["/usr/local/bin/bgpvpn-agent"], cmd=["run"])),
    ("localhost/bgpvpn-operator:lab", [base, binary("bgpvpn-operator")],
     dict(entrypoint=["/usr/local/bin/bgpvpn-operator"], cmd=["run", "--config=/etc/bgpvpn-operator/config.yaml"],
          user="65532:65532")),
]
for ref, layers, config in images:
    archive.image(ref, layers, **config)
archive.write(os.path.join(out, "images.tar"))
for ref, layers, _ in images:
    print(f"{ref} {len(layers)} {sum(len(l) for l in layers)}")
PY
  rm -f "$tmp/bgpvpn-agent" "$tmp/bgpvpn-operator"
  python3 -c "print(f'built in {$(date +%s.%N) - $t0:.1f}s')" >>"$tmp/build-info"
  mv "$tmp" "$OUT"
  trap - EXIT
  # one archive is a few hundred MB: keep only this one
  find "$DIR" -mindepth 1 -maxdepth 1 -type d ! -name "$KEY" ! -name '.build-*' -exec rm -rf {} +
  log "built $OUT/images.tar ($(du -h "$OUT/images.tar" | cut -f1)): $(tr '\n' ';' <"$OUT/build-info")"
fi
echo "$OUT/images.tar"
grep '^localhost/' "$OUT/build-info"
