# v1 (HMAC-SHA256): the standardwebhooks package (pip install standardwebhooks).
from standardwebhooks import Webhook


def verify_v1(secret: str, body: bytes, headers: dict) -> dict:
    """The event in `body`, if its v1 signature verifies; raises otherwise.

    `secret` is the subscription's `standard_webhooks_secret` (`whsec_...`),
    `body` the raw request body exactly as received (not parsed and
    re-serialised), `headers` the request's headers.
    """
    return Webhook(secret).verify(body, headers)
