#!/usr/bin/env python3
"""The tests' switch in user space, for kernels without `tc netem` (tests/common/netns.rs).

Each machine (a network namespace) gets a TUN device `eth0` with its address; every IPv4
packet a machine sends out of it is held DELAY_MS, dropped with probability LOSS_PERCENT,
and written into the TUN device of the machine that owns the destination address, which
the kernel there receives as if from a wire. That is what netem's delay and loss on each
machine's egress do, one packet at a time, with TCP's own handshake delayed like the rest.
Only unicast IPv4 is carried (the tests dial addresses; nothing here broadcasts).

usage: tun_switch.py DELAY_MS LOSS_PERCENT SEED
then, on stdin, one line per machine: `add NAMESPACE ADDRESS/PREFIX`, answered `ok` or
`error: why` on stdout. The devices vanish with this process.
"""

import collections
import ctypes
import fcntl
import os
import random
import select
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def tun_in(ns):
    """A TUN device `eth0` inside namespace `ns`: its fd."""
    home = "/proc/self/ns/net"
    home_fd = os.open(home, os.O_RDONLY)
    try:
        setns(f"/run/netns/{ns}")
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", b"eth0", IFF_TUN | IFF_NO_PI))
    finally:
        if libc.setns(home_fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(home_fd)
    return fd


def ip(*args):
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {out.stderr.strip()}")


def add(line, ports):
    _, ns, cidr = line.split()
    fd = tun_in(ns)
    ip("-n", ns, "addr", "add", cidr, "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    addr = bytes(int(x) for x in cidr.split("/")[0].split("."))
    ports[addr] = fd


def main():
    delay = float(sys.argv[1]) / 1000.0
    loss = float(sys.argv[2]) / 100.0
    rng = random.Random(int(sys.argv[3]))
    ports = {}  # IPv4 address (4 bytes) -> TUN fd
    held = collections.deque()  # (due, fd, packet); one delay, so due times only grow
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else None
        ready, _, _ = select.select([stdin, *ports.values()], [], [], wait)
        for fd in ready:
            if fd == stdin:
                # Read the fd itself: a buffered reader would hide lines from select.
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    try:
                        add(line.decode(), ports)
                        print("ok", flush=True)
                    except (OSError, ValueError) as e:
                        print(f"error: {e}", flush=True)
                continue
            try:
                pkt = os.read(fd, 65536)
            except OSError:
                continue
            if len(pkt) < 20 or pkt[0] >> 4 != 4:
                continue
            to = ports.get(pkt[16:20])
            if to is None or rng.random() < loss:
                continue
            held.append((time.monotonic() + delay, to, pkt))
        now = time.monotonic()
        while held and held[0][0] <= now:
            _, to, pkt = held.popleft()
            try:
                os.write(to, pkt)
            except OSError:
                pass


if __name__ == "__main__":
    main()
