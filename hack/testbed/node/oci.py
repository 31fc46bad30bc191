"""OCI image archives without a registry or an image builder.

An archive is an OCI layout (oci-layout, index.json, sha256 blobs) with uncompressed layers,
which `ctr -n k8s.io images import` takes. One archive may hold several images: the blobs they
share (a base layer) are stored once. Used by images.sh and lab-images.sh.
"""

import hashlib
import io
import json
import os
import stat
import tarfile


def _info(name, kind, mode=0o755, size=0, target="", uid=0, gid=0, mtime=0):
    i = tarfile.TarInfo(name)
    i.type, i.mode, i.uid, i.gid, i.mtime, i.size = kind, mode, uid, gid, mtime, size
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        i.linkname = target
    return i


class Layer:
    """One layer, built entry by entry; deterministic for the same entries."""

    def __init__(self):
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)

    def dir(self, name, mode=0o755):
        self._tar.addfile(_info(name, tarfile.DIRTYPE, mode))

    def file(self, name, data, mode=0o755):
        self._tar.addfile(_info(name, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def symlink(self, name, target):
        self._tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, target=target))

    def tree(self, root, skip=()):
        """Everything under `root` (owners, modes, links and hard links kept), except the
        contents of the directories in `skip` (relative paths) and device or socket files."""
        hard = {}
        for top, dirs, files in os.walk(root):
            dirs.sort()
            rel_top = os.path.relpath(top, root)
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(top, name)
                rel = os.path.normpath(os.path.join(rel_top, name))
                st = os.lstat(path)
                common = dict(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, mtime=int(st.st_mtime))
                if stat.S_ISDIR(st.st_mode):
                    self._tar.addfile(_info(rel, tarfile.DIRTYPE, **common))
                elif stat.S_ISLNK(st.st_mode):
                    self._tar.addfile(_info(rel, tarfile.SYMTYPE, target=os.readlink(path), **common))
                elif stat.S_ISREG(st.st_mode):
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1 and key in hard:
                        self._tar.addfile(_info(rel, tarfile.LNKTYPE, target=hard[key], **common))
                        continue
                    hard[key] = rel
                    with open(path, "rb") as f:
                        self._tar.addfile(_info(rel, tarfile.REGTYPE, size=st.st_size, **common), f)
            # skipped directories are kept, empty
            dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel_top, d)) not in skip]

    def bytes(self):
        self._tar.close()
        return self._buf.getvalue()


class Archive:
    """Images written into one OCI layout archive."""

    def __init__(self):
        self.blobs = {}
        self.manifests = []

    def _blob(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return digest, len(data)

    def image(self, ref, layers, entrypoint=None, cmd=None, env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
              port=None, user=None):
        """Adds the image `ref` (e.g. localhost/testbed-web:1) of `layers` (bytes, bottom first)."""
        config = {"Env": list(env), "WorkingDir": "/"}
        if entrypoint:
            config["Entrypoint"] = entrypoint
        if cmd:
            config["Cmd"] = cmd
        if port:
            config["ExposedPorts"] = {f"{port}/tcp": {}}
        if user:
            config["User"] = user
        descriptors = []
        diff_ids = []
        for data in layers:
            digest, size = self._blob(data)
            descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size})
            diff_ids.append(digest)
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config,
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}, sort_keys=True).encode()
        cfg_digest, cfg_size = self._blob(cfg)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": cfg_digest, "size": cfg_size},
                               "layers": descriptors}, sort_keys=True).encode()
        digest, size = self._blob(manifest)
        self.manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
                               "platform": {"architecture": "amd64", "os": "linux"},
                               # containerd takes the full name from its own annotation
                               "annotations": {"io.containerd.image.name": ref,
                                               "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]}})

    def write(self, path):
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.manifests}
        files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
                 "index.json": json.dumps(index, sort_keys=True).encode()}
        for digest, data in self.blobs.items():
            files["blobs/sha256/" + digest.split(":", 1)[1]] = data
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
            for d in ["blobs", "blobs/sha256"]:
                t.addfile(_info(d, tarfile.DIRTYPE))
            for name, data in sorted(files.items()):
                t.addfile(_info(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
        return os.path.getsize(path)
