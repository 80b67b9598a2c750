"""A minimal OpenID provider on loopback HTTPS for the console's sign-in
test: discovery, an authorization endpoint that signs the user in at once
and redirects back with a code, and a token endpoint that checks the PKCE
verifier against the challenge before it hands out the ID token."""

import base64
import datetime
import hashlib
import json
import secrets
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_context():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    pem = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
    pem.write(cert.public_bytes(serialization.Encoding.PEM))
    pem.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pem.close()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem.name)
    return ctx


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeOidc:
    """The provider. `id_token` is what a successful exchange returns;
    `exchanges` records each token request that passed the PKCE check."""

    def __init__(self, client_id, id_token):
        self.client_id = client_id
        self.id_token = id_token
        self.codes = {}
        self.authorizations = []
        self.exchanges = []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def reply(self, status, body, extra=()):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("access-control-allow-origin", "*")
                for k, v in extra:
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urlparse(self.path)
                if url.path == "/.well-known/openid-configuration":
                    return self.reply(200, {
                        "issuer": provider.issuer,
                        "authorization_endpoint": provider.issuer + "/authorize",
                        "token_endpoint": provider.issuer + "/token",
                        "code_challenge_methods_supported": ["S256"],
                    })
                if url.path == "/authorize":
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    provider.authorizations.append(q)
                    if q.get("client_id") != provider.client_id or q.get("code_challenge_method") != "S256":
                        return self.reply(400, {"error": "invalid_request"})
                    code = secrets.token_urlsafe(16)
                    provider.codes[code] = q
                    target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
                    self.send_response(302)
                    self.send_header("location", target)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return None
                return self.reply(404, {"error": "not_found"})

            def do_OPTIONS(self):
                self.send_response(204)
                self.send_header("access-control-allow-origin", "*")
                self.send_header("access-control-allow-headers", "content-type")
                self.send_header("access-control-allow-methods", "POST")
                self.end_headers()

            def do_POST(self):
                if urlparse(self.path).path != "/token":
                    return self.reply(404, {"error": "not_found"})
                length = int(self.headers.get("content-length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                asked = provider.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                if (
                    asked is None
                    or form.get("grant_type") != "authorization_code"
                    or form.get("client_id") != provider.client_id
                    or form.get("redirect_uri") != asked["redirect_uri"]
                    or b64url(hashlib.sha256(verifier.encode()).digest()) != asked["code_challenge"]
                ):
                    return self.reply(400, {"error": "invalid_grant"})
                provider.exchanges.append(form)
                return self.reply(200, {"id_token": provider.id_token, "access_token": "opaque", "token_type": "Bearer"})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = self_signed_context().wrap_socket(self.server.socket, server_side=True)
        self.issuer = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
