#!/usr/bin/env python3
"""Make the small real captures the rules package tests against.

Each scenario runs real sockets over loopback while tcpdump captures its
port, so every packet comes from the Linux TCP stack: zero windows and their
probes, the accept queue dropping SYNs, CLOSE_WAIT, resets with unread data.
Run as root from the repository root:

    python3 rules/testdata/lab/make_captures.py rules/testdata

It writes one .pcap per scenario and prints what each one holds. Traffic
goes to 127.0.0.0/8 only; every socket and tcpdump it starts is stopped
before it returns.
"""

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

SERVER = "127.0.0.2"
CLIENT = "127.0.0.3"


def capture(out, port, scenario):
    """Run scenario() while tcpdump writes the port's packets to out."""
    dump = subprocess.Popen(
        # --immediate-mode: without it the kernel hands packets over in
        # blocks, and the last second of the scenario is lost at SIGINT.
        ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-s", "128", "-w", out, f"tcp port {port}"],
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # tcpdump needs a moment before it sees packets
    cleanup = None
    try:
        cleanup = scenario(port)
        time.sleep(1.0)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)
        # What a scenario leaves open (CLOSE_WAIT sockets) is closed only
        # once the capture has stopped.
        if cleanup:
            cleanup()
    print(f"{out}: {scenario.__doc__.strip()}")


def listener(port, backlog=16, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((SERVER, port))
    s.listen(backlog)
    return s


def client(port, rcvbuf=None, timeout=None):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        # Set before connect() so the window scale in the SYN follows it.
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.bind((CLIENT, 0))
    c.settimeout(timeout)
    c.connect((SERVER, port))
    return c


def abort(s):
    """close() with SO_LINGER 0: the kernel sends RST, as nginx does with
    reset_timedout_connection on."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def send_until_blocked(conn, seconds):
    """Write for `seconds`, with a send timeout, as a proxy pushing
    messages to a consumer."""
    conn.settimeout(0.2)
    deadline = time.time() + seconds
    chunk = b"m" * 4096
    while time.time() < deadline:
        try:
            conn.send(chunk)
        except socket.timeout:
            pass


def zero_window_rst(port):
    """seed 001: the client stops reading; the server's window to it
    closes, the server probes for 4 s, then aborts with RST."""
    srv = listener(port)
    c = client(port, rcvbuf=4096)
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    send_until_blocked(conn, 4.0)
    abort(conn)
    time.sleep(0.2)
    c.close()
    srv.close()


def slow_reader(port):
    """healthy twin: a slow consumer that keeps reading, 2 KB every 20 ms;
    its window closes for moments, and the connection ends with FIN both
    ways."""
    srv = listener(port)
    c = client(port, rcvbuf=4096)
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    total = 200_000

    def read():
        got = 0
        while got < total:
            data = c.recv(2048)
            if not data:
                break
            got += len(data)
            time.sleep(0.02)

    t = threading.Thread(target=read)
    t.start()
    conn.sendall(b"m" * total)
    t.join()
    conn.close()
    time.sleep(0.1)
    c.close()
    srv.close()


def zero_window_stall(port):
    """the client stops reading for 3 s, then reads everything; the
    connection then closes normally."""
    srv = listener(port)
    c = client(port, rcvbuf=4096)
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    conn.settimeout(10)
    t = threading.Thread(target=lambda: conn.sendall(b"m" * 100_000))
    t.start()
    time.sleep(3.0)
    c.settimeout(2.0)
    got = 0
    while got < 100_000:
        data = c.recv(65536)
        if not data:
            break
        got += len(data)
    t.join()
    conn.close()
    time.sleep(0.1)
    c.close()
    srv.close()


def close_wait(port):
    """seed 003: three clients make a request and close; the server
    answers and never closes. 2 s later a health check connects and
    leaves; the capture stops 1 s after that."""
    srv = listener(port)
    held = []
    for _ in range(3):
        c = client(port)
        conn, _ = srv.accept()
        c.sendall(b"ping\n")
        conn.recv(100)
        conn.sendall(b"pong\n")
        c.recv(100)
        c.close()  # FIN; the server's kernel ACKs it, the server never closes
        held.append(conn)
    time.sleep(2.0)
    check = client(port)
    conn, _ = srv.accept()
    check.close()
    conn.close()

    def cleanup():
        for conn in held:
            conn.close()
        srv.close()

    return cleanup


def close_wait_prompt(port):
    """healthy twin: the client closes and the server closes 200 ms later."""
    srv = listener(port)
    c = client(port)
    conn, _ = srv.accept()
    c.sendall(b"ping\n")
    conn.recv(100)
    conn.sendall(b"pong\n")
    c.recv(100)
    c.close()
    time.sleep(0.2)
    conn.close()
    time.sleep(1.5)
    srv.close()


def syn_storm(port):
    """seed 002: a listener with backlog 1 that never calls accept(); 20
    clients connect at once with a 300 ms connect timeout."""
    srv = listener(port, backlog=1)
    results = []

    def connect():
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.bind((CLIENT, 0))
        c.settimeout(0.3)
        try:
            c.connect((SERVER, port))
            results.append("connected")
        except OSError as e:
            results.append(type(e).__name__)
        finally:
            c.close()

    threads = [threading.Thread(target=connect) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(2.5)  # long enough for SYN-ACK retransmissions and no SYN retries
    srv.close()
    print("  connect results:", {r: results.count(r) for r in set(results)})


def syn_prompt(port):
    """healthy twin: 20 clients against a listener that accepts at once."""
    srv = listener(port, backlog=64)
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except socket.timeout:
                pass

    t = threading.Thread(target=accept)
    t.start()
    for _ in range(20):
        c = client(port, timeout=0.3)
        c.close()
    time.sleep(0.5)
    stop.set()
    t.join()
    srv.close()


def refused(port):
    """two clients connect to a port nothing listens on."""
    for _ in range(2):
        try:
            client(port, timeout=1)
        except ConnectionRefusedError:
            pass


def rst_unread(port):
    """the server reads the first request, then closes with the second one
    unread: the kernel sends RST instead of FIN."""
    srv = listener(port)
    c = client(port)
    conn, _ = srv.accept()
    c.sendall(b"GET /a\n")
    conn.recv(7)
    c.sendall(b"GET /b\n")
    time.sleep(0.05)
    conn.close()
    time.sleep(0.2)
    c.close()
    srv.close()


def idle_close(port):
    """the server answers, the connection sits idle, and the server closes
    it after 2 s of silence (an idle timeout, shortened for the capture)."""
    srv = listener(port)
    c = client(port)
    conn, _ = srv.accept()
    c.sendall(b"GET /\n")
    conn.recv(100)
    conn.sendall(b"200 OK\n")
    c.recv(100)
    time.sleep(2.0)
    conn.close()
    c.recv(100)
    c.close()
    srv.close()


SCENARIOS = [
    ("zero-window-rst.pcap", 47001, zero_window_rst),
    ("slow-reader.pcap", 47002, slow_reader),
    ("zero-window-stall.pcap", 47003, zero_window_stall),
    ("close-wait.pcap", 47004, close_wait),
    ("close-wait-prompt.pcap", 47005, close_wait_prompt),
    ("syn-storm.pcap", 47006, syn_storm),
    ("syn-prompt.pcap", 47007, syn_prompt),
    ("syn-refused.pcap", 47008, refused),
    ("rst-unread.pcap", 47009, rst_unread),
    ("idle-close.pcap", 47010, idle_close),
]

if __name__ == "__main__":
    outdir = sys.argv[1] if len(sys.argv) > 1 else "."
    only = set(sys.argv[2:])
    for name, port, scenario in SCENARIOS:
        if not only or name in only:
            capture(os.path.join(outdir, name), port, scenario)
