"""Shows that link-local endpoints bypass a proxy, end to end. Run inside a fresh network
namespace (`unshare --net`), as root: brings `lo` up with 169.254.169.254 on it, serves
an IMDSv2 stand-in there and another on 127.0.0.1, and runs `AGENT check --dry-run
--ec2-dimensions` against each with HTTP_PROXY pointing at a closed port. Prints one JSON
line: for each endpoint, whether the request carried the stand-in's InstanceId and how
many requests the stand-in answered.

Usage: link_local.py AGENT"""

import http.server
import json
import socket
import subprocess
import sys
import threading

INSTANCE_ID = "i-0fedcba9876543210"
TOKEN = "AQAEAlinklocal=="


def serve(address, port):
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, status, body, extra=()):
            seen.append(self.path)
            self.send_response(status)
            for name, value in extra:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_PUT(self):
            if self.path == "/latest/api/token":
                self.reply(200, TOKEN, [("X-aws-ec2-metadata-token-ttl-seconds", "21600")])
            else:
                self.reply(404, "")

        def do_GET(self):
            if self.headers.get("x-aws-ec2-metadata-token") != TOKEN:
                self.reply(401, "")
            elif self.path == "/latest/meta-data/instance-id":
                self.reply(200, INSTANCE_ID)
            elif self.path == "/latest/meta-data/instance-type":
                self.reply(200, "m7g.large")
            else:
                self.reply(404, "")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return seen


def run(agent, endpoint, closed_port):
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_CONFIG_FILE": "/nonexistent/config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
        "AWS_EC2_METADATA_DISABLED": "false",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
        "HTTP_PROXY": f"http://127.0.0.1:{closed_port}",
        "HTTPS_PROXY": f"http://127.0.0.1:{closed_port}",
    }
    out = subprocess.run(
        [agent, "check", "--dry-run", "-n", "N", "-s", "w", "--scope", "host", "--ec2-dimensions"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    return out.returncode, INSTANCE_ID in out.stdout


def main():
    agent = sys.argv[1]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"], check=True)
    link_local_seen = serve("169.254.169.254", 80)
    loopback_seen = serve("127.0.0.1", 8080)
    # A port nothing listens on: a request sent through this "proxy" fails at once.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    result = {}
    for name, endpoint, seen in [
        ("link_local", "http://169.254.169.254", link_local_seen),
        ("loopback", "http://127.0.0.1:8080", loopback_seen),
    ]:
        code, carried = run(agent, endpoint, closed_port)
        result[name] = {"status": code, "instance_id": carried, "answered": len(seen)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
