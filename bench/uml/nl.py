"""Tiny, dependency-free helpers for the benchmark probes that run inside the UML guest.

Every process spawn costs ~35 ms in the guest (ptrace-based UML) and `vtysh` ~650 ms, so the
probes never poll with `ip` or `vtysh`: they keep sockets open in each network namespace and
talk rtnetlink and the FRR daemons' vty sockets directly (a few syscalls per poll).
"""
import ctypes
import os
import socket
import struct

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWRULE, RTM_GETRULE = 32, 34
IFLA_IFNAME = 3
RTA_DST, RTA_TABLE = 1, 15
FRA_SRC, FRA_TABLE = 2, 15
AF_INET = 2


def in_netns(name, fn):
    """Runs fn() with this thread inside /run/netns/<name>; sockets made there stay there."""
    cur = os.open("/proc/self/ns/net", os.O_RDONLY)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        return fn()
    finally:
        _libc.setns(cur, CLONE_NEWNET)
        os.close(fd)
        os.close(cur)


def _attrs(buf, off, end):
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4:
            break
        yield atype & 0x3FFF, buf[off + 4:off + alen]
        off += (alen + 3) & ~3


class Rtnl:
    """One NETLINK_ROUTE socket (in the namespace it was made in) with dump helpers."""

    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.s.bind((0, 0))
        self.seq = 0

    def _dump(self, msgtype, body):
        self.seq += 1
        self.s.send(struct.pack("=IHHII", 16 + len(body), msgtype, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + body)
        out = []
        while True:
            data = self.s.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                mlen, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if mlen < 16:
                    return out
                if seq == self.seq:
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        raise OSError(-struct.unpack_from("=i", data, off + 16)[0], "netlink dump")
                    out.append((mtype, data[off + 16:off + mlen]))
                off += (mlen + 3) & ~3

    def links(self):
        """Names of all links."""
        names = set()
        for mtype, m in self._dump(RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0)):
            if mtype == RTM_NEWLINK:
                for t, v in _attrs(m, 16, len(m)):
                    if t == IFLA_IFNAME:
                        names.add(v.rstrip(b"\0").decode())
        return names

    def routes4(self):
        """(table, 'a.b.c.d/len') of every IPv4 route."""
        out = []
        for mtype, m in self._dump(RTM_GETROUTE, struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
            if mtype != RTM_NEWROUTE:
                continue
            _fam, dlen, _slen, _tos, table = struct.unpack_from("=BBBBB", m, 0)
            dst = "0.0.0.0"
            for t, v in _attrs(m, 12, len(m)):
                if t == RTA_TABLE:
                    table = struct.unpack("=I", v)[0]
                elif t == RTA_DST:
                    dst = socket.inet_ntoa(v)
            out.append((table, f"{dst}/{dlen}"))
        return out

    def rules4(self):
        """(table, 'src/len' or None) of every IPv4 rule."""
        out = []
        for mtype, m in self._dump(RTM_GETRULE, struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
            if mtype != RTM_NEWRULE:
                continue
            _fam, _dlen, slen, _tos, table = struct.unpack_from("=BBBBB", m, 0)
            src = None
            for t, v in _attrs(m, 12, len(m)):
                if t == FRA_TABLE:
                    table = struct.unpack("=I", v)[0]
                elif t == FRA_SRC:
                    src = f"{socket.inet_ntoa(v)}/{slen}"
            out.append((table, src))
        return out


class Vty:
    """A session on one FRR daemon's vty socket, as vtysh opens it (`enable` once)."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.cmd("enable")

    def cmd(self, line):
        """Sends one command; returns (status, output). Status 0 = success."""
        self.s.sendall(line.encode() + b"\0")
        buf = bytearray()
        while not (len(buf) >= 4 and buf[-4:-1] == b"\0\0\0"):
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise ConnectionError("vty closed")
            buf += chunk
        return buf[-1], bytes(buf[:-4]).decode(errors="replace")

    def close(self):
        self.s.close()


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return None


RTMGRP_LINK, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE = 0x1, 0x40, 0x80


class Events:
    """A NETLINK_ROUTE socket subscribed to link, IPv4 route and IPv4 rule notifications."""

    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.s.bind((0, RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE))
        self.s.setblocking(False)

    def fileno(self):
        return self.s.fileno()

    def drain(self):
        """Reads every pending notification; returns how many datagrams there were."""
        n = 0
        while True:
            try:
                self.s.recv(1 << 20)
                n += 1
            except BlockingIOError:
                return n
            except OSError:   # ENOBUFS: events were lost, the caller re-checks anyway
                n += 1
