#!/usr/bin/python3
"""One WebSocket opening handshake over a plain socket, as a browser would send it, for
mininet/websocket_test.py: `raw_handshake.py HOST PORT TARGET`. Sends the request a browser sends
(Host, Upgrade, Connection, Sec-WebSocket-Key, -Version 13, -Protocol mqtt, -Extensions
permessage-deflate, Origin, User-Agent), reads the response head, and then, for 2 s, whether the
server closes the connection (an orderly FIN reads as end of file). Prints one JSON object: status
line, headers (names lower-cased, each a list of values), the key sent, the bytes after the head,
and `closed` (true: FIN, "reset": RST, false: still open after 2 s).
"""

import base64
import json
import os
import socket
import sys


def main():
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    key = base64.b64encode(os.urandom(16)).decode()
    request = ("GET %s HTTP/1.1\r\n"
               "Host: %s:%d\r\n"
               "Connection: Upgrade\r\n"
               "Pragma: no-cache\r\n"
               "Cache-Control: no-cache\r\n"
               "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "Chrome/120.0.0.0 Safari/537.36\r\n"
               "Upgrade: websocket\r\n"
               "Origin: http://%s:8000\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "Accept-Encoding: gzip, deflate\r\n"
               "Accept-Language: en-US,en;q=0.9\r\n"
               "Sec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
               "Sec-WebSocket-Protocol: mqtt\r\n"
               "\r\n" % (target, host, port, host, key))
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(request.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    s.settimeout(2)
    closed = False
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                closed = True
                break
            rest += chunk
    except socket.timeout:
        closed = False
    except ConnectionResetError:
        closed = "reset"
    s.close()
    print(json.dumps({"status": lines[0], "headers": headers, "key": key,
                      "after": base64.b64encode(rest).decode(), "closed": closed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
