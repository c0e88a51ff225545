#!/usr/bin/env python3
"""Upstreams and clients for the lab nginx of regen.sh (loopback only).

  nginxlab.py upstreams   serve 127.0.0.1:8081 (HTTP 200), :8083 (accepts,
                          never answers), :8084 (answers 101, then resets,
                          idles or floods, by path) until killed
  nginxlab.py clients     send the lab's requests to nginx on 127.0.0.1:8080
"""
import socket
import struct
import sys
import threading
import time

NGINX = ("127.0.0.1", 8080)


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return data


def serve(port, handler):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


def ok_handler(conn):
    while read_head(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    conn.close()


held = []


def silent_handler(conn):
    held.append(conn)  # never answer, never close


def ws_handler(conn):
    head = read_head(conn)
    if head is None:
        return
    path = head.split(b" ", 2)[1]
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    if path == b"/ws/reset":
        time.sleep(0.3)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST
    elif path == b"/ws/flood":
        frame = b"\x82\x7e\x10\x00" + b"x" * 4096
        try:
            while True:
                conn.sendall(frame)
        except OSError:
            conn.close()
    else:
        held.append(conn)


def upstreams():
    for port, handler in ((8081, ok_handler), (8083, silent_handler), (8084, ws_handler)):
        threading.Thread(target=serve, args=(port, handler), daemon=True).start()
    while True:
        time.sleep(3600)


def request(raw, wait=0.0):
    with socket.create_connection(NGINX) as s:
        s.sendall(raw)
        s.settimeout(5)
        try:
            while s.recv(65536):
                pass
        except socket.timeout:
            pass
    time.sleep(wait)


def get(path, headers=b""):
    request(b"GET " + path + b" HTTP/1.1\r\nHost: lab\r\nUser-Agent: nginxlab\r\n" + headers + b"Connection: close\r\n\r\n")


def upgrade(path, hold, rcvbuf=0):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(NGINX)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: lab\r\nUser-Agent: nginxlab\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    if not rcvbuf:
        s.settimeout(hold)
        try:
            while s.recv(65536):
                pass
        except socket.timeout:
            pass
    else:
        time.sleep(hold)  # never read: the window closes, nginx's Send-Q grows
    s.close()


def clients():
    get(b"/static/index.html")
    get(b"/static/missing")
    get(b"/ok")
    # Two requests on one connection: $connection_requests 1 and 2.
    request(b"GET /ok HTTP/1.1\r\nHost: lab\r\nUser-Agent: nginxlab\r\n\r\n"
            b"GET /static/index.html HTTP/1.1\r\nHost: lab\r\nUser-Agent: nginxlab\r\nConnection: close\r\n\r\n")
    get(b"/refused")
    get(b"/silent")
    get(b"/retry")
    get(b"/redirect")
    upgrade(b"/ws/reset", 2)
    upgrade(b"/ws/idle", 3)
    upgrade(b"/ws/flood", 4, rcvbuf=4096)
    # Bytes nginx escapes as \xHH in the access log.
    get(b"/static/index.html", b"Referer: http://lab/?q=\"x\"\\y\r\nX-Note: \xe4\xb8\xad\r\n")
    request(b"GET /static/index.html HTTP/1.1\r\nHost: lab\r\nUser-Agent: caf\xc3\xa9 \"quoted\"\r\nConnection: close\r\n\r\n")
    # A TLS ClientHello and a bare word sent to the plain-HTTP port: 400.
    request(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)))
    request(b"HELP\r\n\r\n")
    time.sleep(1)


if __name__ == "__main__":
    {"upstreams": upstreams, "clients": clients}[sys.argv[1]]()
