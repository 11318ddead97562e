#!/usr/bin/env python3
"""A fixed-delay packet relay on a TUN device, for bench/hol.sh.

Usage: delay_relay.py TUN_NAME DELAY_MS

Attaches to the (existing, persistent) TUN device TUN_NAME, reads every IP packet the kernel
routes into it, and writes it back DELAY_MS later, in order: the kernel then forwards it on
(policy routing in the router namespace sends traffic through the TUN once per direction).
With 25 ms each way, every round trip gets 50 ms. No queue limit beyond the kernel's; packets
are never reordered or dropped here (loss is nftables' job). Runs until killed.
"""

import collections
import fcntl
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main():
    name, delay = sys.argv[1], float(sys.argv[2]) / 1000.0
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    queue = collections.deque()  # (due, packet), due times increase
    print(f"delay_relay: {name} +{delay * 1000:.0f} ms", flush=True)
    while True:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, packet = queue.popleft()
            try:
                os.write(fd, packet)
            except OSError:
                pass  # e.g. the route went away during cleanup
        timeout = max(0.0, queue[0][0] - now) if queue else None
        readable, _, _ = select.select([fd], [], [], timeout)
        if readable:
            arrived = time.monotonic()
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                queue.append((arrived + delay, packet))


if __name__ == "__main__":
    main()
