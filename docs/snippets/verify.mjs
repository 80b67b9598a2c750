// v1 (HMAC-SHA256): the standardwebhooks package (npm install standardwebhooks).
// v1a (Ed25519): Node's own crypto module, no package needed.
import { createPublicKey, verify } from "node:crypto";
import { Webhook } from "standardwebhooks";

const TOLERANCE_SECONDS = 5 * 60;

// The event in `body` (the raw request body, a string or Buffer exactly as
// received), if its v1 signature verifies with the subscription's
// `standard_webhooks_secret` (`whsec_...`); throws otherwise.
export function verifyV1(secret, body, headers) {
  return new Webhook(secret).verify(body, headers);
}

// The event in `body`, if a v1a signature verifies with the subscription's
// `public_key` (`whpk_...`); throws otherwise.
export function verifyV1a(publicKey, body, headers) {
  const header = (name) => headers[name] ?? headers[name.toLowerCase()];
  const id = header("webhook-id");
  const timestamp = header("webhook-timestamp");
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) {
    throw new Error("webhook-timestamp is more than 5 minutes from now");
  }
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64");
  const key = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") },
    format: "jwk",
  });
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), Buffer.from(body)]);
  for (const entry of header("webhook-signature").split(" ")) {
    const [scheme, signature] = entry.split(",");
    if (scheme === "v1a" && verify(null, signed, key, Buffer.from(signature ?? "", "base64"))) {
      return JSON.parse(body.toString());
    }
  }
  throw new Error("no v1a signature verifies");
}
