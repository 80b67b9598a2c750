# v1a (Ed25519): the cryptography package (pip install cryptography).
import base64
import json
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE_SECONDS = 5 * 60


def verify_v1a(public_key: str, body: bytes, headers: dict) -> dict:
    """The event in `body`, if a v1a signature verifies; raises otherwise.

    `public_key` is the subscription's `public_key` (`whpk_...`), `body` the
    raw request body exactly as received, `headers` the request's headers.
    """
    headers = {name.lower(): value for name, value in headers.items()}
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        raise ValueError("webhook-timestamp is more than 5 minutes from now")
    raw_key = base64.b64decode(public_key.removeprefix("whpk_"))
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    signed = f"{msg_id}.{timestamp}.".encode() + body
    for entry in headers["webhook-signature"].split():
        scheme, _, signature = entry.partition(",")
        if scheme != "v1a":
            continue
        try:
            key.verify(base64.b64decode(signature), signed)
        except (InvalidSignature, ValueError):
            continue
        return json.loads(body)
    raise ValueError("no v1a signature verifies")
