#!/usr/bin/env python3
"""Sockets in the states the seeds are about, on loopback, for regen.sh.

Runs until killed (or SIGTERM), after creating:
  :9001  CLOSE_WAIT pile-up: the server accepts and never closes; clients close
  :9002  zero window: the server floods; the client never reads
  :9003  accept-queue overflow: backlog 1, never accepts; SYNs get dropped
  :9004  TIME_WAIT: the server closes first
  [::1]:9005 and [::]:9006  IPv6 and IPv4-mapped connections, keepalive on
"""
import socket
import threading
import time

LO = "127.0.0.1"
keep = []


def listener(addr, backlog=16, family=socket.AF_INET):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and addr[0] == "::":
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(addr)
    s.listen(backlog)
    keep.append(s)
    return s


def accept_forever(srv, handle):
    def loop():
        while True:
            conn, _ = srv.accept()
            handle(conn)
    threading.Thread(target=loop, daemon=True).start()


def flood(conn):
    def loop():
        try:
            while True:
                conn.sendall(b"x" * 65536)
        except OSError:
            pass
    threading.Thread(target=loop, daemon=True).start()


def main():
    accept_forever(listener((LO, 9001)), keep.append)
    accept_forever(listener((LO, 9002)), lambda c: (keep.append(c), flood(c)))
    listener((LO, 9003), backlog=1)
    accept_forever(listener((LO, 9004)), lambda c: c.close())
    accept_forever(listener(("::1", 9005), family=socket.AF_INET6), keep.append)
    accept_forever(listener(("::", 9006), family=socket.AF_INET6), keep.append)

    for _ in range(5):
        c = socket.create_connection((LO, 9001))
        c.close()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((LO, 9002))
    keep.append(slow)
    for _ in range(6):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex((LO, 9003))
        keep.append(c)
    for _ in range(2):
        c = socket.create_connection((LO, 9004))
        time.sleep(0.1)
        c.close()
    for addr, family in ((("::1", 9005), socket.AF_INET6), ((LO, 9006), socket.AF_INET)):
        c = socket.socket(family)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        c.connect(addr)
        keep.append(c)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
