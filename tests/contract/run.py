#!/usr/bin/env python3
"""Contract run: schemathesis against `cinder-dev` with docs/openapi.yaml.

    python3 tests/contract/run.py [--max-examples N] [--seed S] [--bin target/debug/cinder-dev]

1. Starts `cinder-dev` on a free port over a temporary data folder (building it with
   `cargo build -p cinder-dev` if the binary is missing).
2. Sets up known records through the API, signing as docs/AUTH.md says: a user (a
   self-signed version 1 bundle, docs/API.md §4), an envelope in its inbox, two rooms with a
   channel, held and posted messages, an attachment and an avatar.
3. Starts a signing reverse proxy: every request schemathesis sends is signed on the way
   through (Ed25519 over the canonical text of the exact method, path and query, and body
   bytes), as the user for /keys and /inbox, and with the room's capabilities for /rooms,
   /messages and /media. hooks.py swaps generated ids for the known ones in most cases,
   so routes are exercised past 401.
4. Runs `schemathesis run` with the checks not_a_server_error and
   response_schema_conformance, and exits with its status (non-zero on any failure).

Needs: pip install -r tests/requirements.txt (schemathesis, PyNaCl).
"""

import argparse
import base64
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from nacl.signing import SigningKey

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign_headers(key: SigningKey, signer: str, method: str, path_and_query: str, body: bytes):
    """The four headers of docs/AUTH.md."""
    ts = str(int(time.time()))
    nonce = b64(secrets.token_bytes(16))
    text = "\n".join([
        "cinder/request/v1", method, path_and_query, hashlib.sha256(body).hexdigest(),
        signer, ts, nonce,
    ])
    sig = key.sign(text.encode()).signature
    return {
        "x-cinder-signer": signer,
        "x-cinder-timestamp": ts,
        "x-cinder-nonce": nonce,
        "x-cinder-signature": b64(sig),
    }


class Identity:
    """Every key the run signs with, and the records made with them."""

    def __init__(self):
        self.user = SigningKey.generate()
        vk = bytes(self.user.verify_key)
        self.user_id = hashlib.sha256(b"cinder/user-id/v1\0" + vk).digest()[:16].hex()
        self.pool_admin = SigningKey.generate()  # for POST /rooms bodies rewritten by hooks.py
        self.rooms = {}  # room id -> {"admin", "member", "channels": {id: key}}

    def new_room(self):
        room = secrets.token_hex(16)
        channel = secrets.token_hex(16)
        self.rooms[room] = {
            "admin": SigningKey.generate(),
            "member": SigningKey.generate(),
            "channels": {channel: SigningKey.generate()},
        }
        return room, channel

    def bundle(self) -> dict:
        """The user's version 1 key bundle (docs/API.md §4)."""
        hpke = secrets.token_bytes(32)
        vk = bytes(self.user.verify_key)
        created = int(time.time())
        signed = (b"cinder/key-bundle/v1\0" + bytes.fromhex(self.user_id)
                  + struct.pack(">Q", 1) + hpke + vk + struct.pack(">Q", created))
        return {
            "user_id": self.user_id, "version": 1, "hpke_key": b64(hpke), "sign_key": b64(vk),
            "created_at": created, "self_sig": b64(self.user.sign(signed).signature),
        }

    def signer_for(self, method: str, path_and_query: str, body: bytes):
        """Who signs this request, and with what key (a throwaway key when nothing fits)."""
        segs = path_and_query.split("?", 1)[0].split("/")[1:]
        stranger = SigningKey.generate()
        head = segs[0] if segs else ""
        if head in ("keys", "inbox"):
            return f"user:{self.user_id}", self.user
        if head == "rooms" and len(segs) == 1:
            try:
                doc = json.loads(body)
                room, admin = str(doc["room_id"]), str(doc["admin_key"])
            except Exception:
                return "admin:" + "0" * 32, stranger
            key = self.pool_admin if admin == b64(bytes(self.pool_admin.verify_key)) else stranger
            if room in self.rooms and admin == b64(bytes(self.rooms[room]["admin"].verify_key)):
                key = self.rooms[room]["admin"]
            # A generated room_id may hold control characters, which no HTTP header can
            # carry (the server's HTTP layer would refuse the request before the API sees
            # it); sign for a well-formed id instead, and let the API refuse the mismatch.
            if not (len(room) == 32 and all(ch in "0123456789abcdef" for ch in room)):
                room = "0" * 32
            return f"admin:{room}", key
        room = segs[1] if len(segs) > 1 else "0" * 32
        known = self.rooms.get(room)
        if head == "rooms":
            if not known:
                return f"admin:{room}", stranger
            if method == "GET" and secrets.randbelow(2):
                return f"member:{room}", known["member"]
            return f"admin:{room}", known["admin"]
        if head == "media" and len(segs) > 2 and segs[2] == "avatars":
            return f"member:{room}", known["member"] if known else stranger
        if head in ("messages", "media", "calls"):
            channel = segs[2] if len(segs) > 2 else "0" * 32
            if known and method == "DELETE" and not body:
                return f"admin:{room}", known["admin"]
            key = known["channels"].get(channel) if known else None
            return f"channel:{room}/{channel}", key or stranger
        return f"user:{self.user_id}", self.user


class Client:
    def __init__(self, base: str, ident: Identity):
        self.base, self.ident = base, ident

    def call(self, method, path, body=None, signed=True, expect=(200, 201, 204)):
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if signed:
            signer, key = self.ident.signer_for(method, path, data)
            headers.update(sign_headers(key, signer, method, path, data))
        req = urllib.request.Request(self.base + path, data=data or None, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req) as r:
                status, text = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        if status not in expect:
            raise SystemExit(f"setup: {method} {path} answered {status}: {text[:300]!r}")
        return json.loads(text) if text else None


def setup(base: str, ident: Identity) -> dict:
    c = Client(base, ident)
    c.call("POST", "/keys", ident.bundle(), signed=False)
    env = c.call("POST", f"/inbox/{ident.user_id}", {"sealed": b64(b"sealed invitation")})
    state = {"user_id": ident.user_id, "envelope_id": env["id"],
             "pool_admin_key": b64(bytes(ident.pool_admin.verify_key))}
    for name in ("room", "spare_room"):
        room, channel = ident.new_room()
        keys = ident.rooms[room]
        c.call("POST", "/rooms", {
            "room_id": room, "spine": b64(b"sealed spine v1"),
            "admin_key": b64(bytes(keys["admin"].verify_key)),
            "member_key": b64(bytes(keys["member"].verify_key)),
            "channels": {channel: b64(bytes(keys["channels"][channel].verify_key))},
        })
        state[name] = room
        if name == "room":
            state["channel"] = channel
    room, channel = state["room"], state["channel"]
    # Eight held numbers; the first three are posted with their holds, the rest stay held.
    held = [c.call("POST", f"/messages/{room}/{channel}/numbers") for _ in range(8)]
    numbers = [h["number"] for h in held]
    state["numbers"] = numbers
    grant = c.call("POST", f"/media/{room}/{channel}/{numbers[1]}", {"size": 32})
    state["attachment_media"] = grant["media_id"]
    burn = int(time.time()) + 3600
    for i, number in enumerate(numbers[:3]):
        body = {"ciphertext": b64(b"sealed message %d" % i), "burn_at": burn,
                "delete_hash": b64(hashlib.sha256(b"secret").digest()),
                "hold": held[i]["hold"]}
        if i == 1:
            body["media"] = [grant["media_id"]]
        c.call("PUT", f"/messages/{room}/{channel}/{number}", body)
    state["avatar_media"] = c.call("POST", f"/media/{room}/avatars", {"size": 64})["media_id"]
    return state


def proxy(upstream_port: int, ident: Identity, counters: dict):
    """A reverse proxy that signs each request as it passes."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "connection", "content-length")
                       and not k.lower().startswith("x-cinder-")}
            try:
                signer, key = ident.signer_for(self.command, self.path, body)
                headers.update(sign_headers(key, signer, self.command, self.path, body))
            except Exception:  # a path no signer fits: send it unsigned
                pass
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            counters[resp.status // 100] = counters.get(resp.status // 100, 0) + 1
            counters.setdefault("by_status", {}).setdefault(str(resp.status), 0)
            counters["by_status"][str(resp.status)] += 1
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        def __getattr__(self, name):
            # Every method, including ones like TRACE that schemathesis tries on purpose.
            if name.startswith("do_"):
                return self.forward
            raise AttributeError(name)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def dev_binary(explicit):
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    path = os.path.join(target, "debug", "cinder-dev")
    if not os.path.exists(path):
        subprocess.run(["cargo", "build", "-p", "cinder-dev"], cwd=ROOT, check=True)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--max-examples", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", help="cinder-dev binary (default: target/debug/cinder-dev)")
    ap.add_argument("--report-dir", help="also write a JUnit report here")
    args, extra = ap.parse_known_args()

    if not shutil.which("schemathesis"):
        print("schemathesis is not installed: pip install -r tests/requirements.txt")
        return 2
    binary = dev_binary(args.bin)
    data = tempfile.mkdtemp(prefix="cinder-contract-")
    port = free_port()
    log = open(os.path.join(data, "server.log"), "w")
    server = subprocess.Popen(
        [binary, "--addr", f"127.0.0.1:{port}", "--data-dir", os.path.join(data, "db")],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/keys/" + "0" * 32)
            except urllib.error.HTTPError:
                break  # 404 unknown_user: the server is up
            except OSError:
                time.sleep(0.05)
        else:
            print("cinder-dev did not start; log:", open(log.name).read())
            return 2
        ident = Identity()
        state = setup(base, ident)
        state_path = os.path.join(data, "state.json")
        with open(state_path, "w") as f:
            json.dump(state, f)
        counters = {}
        front = proxy(port, ident, counters)
        url = f"http://127.0.0.1:{front.server_address[1]}"
        cmd = ["schemathesis", "run", os.path.join(ROOT, "docs/openapi.yaml"), "--url", url,
               "--checks", "not_a_server_error,response_schema_conformance",
               "--max-examples", str(args.max_examples), "--seed", str(args.seed),
               "--workers", "2", "--phases", "examples,coverage,fuzzing",
               "--suppress-health-check", "all", "--no-color"]
        if args.report_dir:
            cmd += ["--report", "junit", "--report-dir", args.report_dir]
        cmd += extra
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "hooks", "CINDER_CONTRACT_STATE": state_path,
               "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        front.shutdown()
        print(f"contract: responses by status {dict(sorted(counters.get('by_status', {}).items()))}")
        if counters.get(5):
            print(f"contract: {counters[5]} server errors (5xx); server log: {log.name}")
            rc = rc or 1
        if server.poll() is not None:
            print(f"contract: cinder-dev exited with {server.returncode}; log: {log.name}")
            rc = rc or 1
        return rc
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if os.environ.get("CINDER_CONTRACT_KEEP") is None:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
