"""Schemathesis hooks for the Cinder contract run (loaded through SCHEMATHESIS_HOOKS=hooks).

Random ids only ever reach "unknown user" or "unknown room": to exercise the routes past
authentication, some cases get their path ids (and a few body fields) swapped for the
user, room, channel and message numbers that run.py set up. Which cases are swapped is a
function of the generated data, so runs stay reproducible under a fixed seed. The signing
itself happens in run.py's proxy, which sees the exact bytes on the wire.
"""

import hashlib
import json
import os
import time

import schemathesis

STATE = json.loads(open(os.environ["CINDER_CONTRACT_STATE"]).read())


def _pick(case, salt: str, n: int) -> int:
    """A deterministic choice in 0..n from the generated case."""
    seed = repr((case.path_parameters, case.query, case.body, salt)).encode()
    return hashlib.sha256(seed).digest()[0] % n


@schemathesis.hook
def map_case(context, case):
    op = case.operation
    path, method = op.path, op.method.lower()
    params = dict(case.path_parameters or {})
    if _pick(case, "known", 4) != 0:  # three cases in four use the known records
        if "user_id" in params:
            params["user_id"] = STATE["user_id"]
        if "envelope_id" in params and _pick(case, "env", 2) == 0:
            params["envelope_id"] = STATE["envelope_id"]
        destructive = method in ("put", "delete") and path == "/rooms/{room_id}"
        if "room_id" in params:
            params["room_id"] = STATE["spare_room"] if destructive else STATE["room"]
        if "room" in params:
            params["room"] = STATE["room"]
        if "channel" in params:
            params["channel"] = STATE["channel"]
        if "number" in params:
            params["number"] = STATE["numbers"][_pick(case, "num", len(STATE["numbers"]))]
        if "media" in params and path.startswith("/media/{room}/avatars"):
            params["media"] = STATE["avatar_media"]
        elif "media" in params:
            params["media"] = STATE["attachment_media"]
        body = case.body
        if isinstance(body, dict):
            body = dict(body)
            if path == "/rooms" and "admin_key" in body:
                # An admin key whose private half the proxy holds, so the self-signed
                # create can verify.
                body["admin_key"] = STATE["pool_admin_key"]
            if "burn_at" in body and _pick(case, "burn", 2) == 0:
                body["burn_at"] = int(time.time()) + 3600
            if "size" in body and _pick(case, "size", 2) == 0:
                body["size"] = 1 + _pick(case, "sz", 200)
            case.body = body
    case.path_parameters = params
    return case
