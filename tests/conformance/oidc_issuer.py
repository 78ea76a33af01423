"""A local OpenID Connect issuer for tests of bearer-token access (Azure docs, "Control access
to IoT Hub by using Microsoft Entra ID"): an RSA key and an EC key made with `cryptography`, the
discovery document and JWKS served over plain HTTP on a test's loopback address (the server
allows `http://` issuers on loopback only), and JWTs signed here with any roles, audience,
lifetime or key.

A module uses it as

    ISSUER = Issuer(IRONHUB_ADDRESS)          # binds a free port on that address

    @pytest.fixture(scope="module", autouse=True)
    def issuer():
        with ISSUER.serving():
            yield

and returns `ISSUER.serve_args(workdir)` from its `ironhub_args`; `ISSUER.token(roles, ...)`
mints tokens.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HUB_AUDIENCE = "https://iothubs.azure.net"
DPS_AUDIENCE = "https://azure-devices-provisioning.net"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
# A key the issuer never published: tokens signed with it are forged.
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_bytes(n: int, size: int | None = None) -> bytes:
    return n.to_bytes(size or (n.bit_length() + 7) // 8, "big")


def jwks() -> dict:
    """The issuer's published keys: `rsa-1` (RS256) and `ec-1` (ES256)."""
    rsa_numbers = RSA_KEY.public_key().public_numbers()
    ec_numbers = EC_KEY.public_key().public_numbers()
    return {"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
         "n": b64url(int_bytes(rsa_numbers.n)), "e": b64url(int_bytes(rsa_numbers.e))},
        {"kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
         "x": b64url(int_bytes(ec_numbers.x, 32)), "y": b64url(int_bytes(ec_numbers.y, 32))},
    ]}


class Issuer:
    """The issuer's HTTP server on `address` (a free port) and its token minting."""

    def __init__(self, address: str):
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            """`/tenant/.well-known/openid-configuration` and `/keys`."""

            def do_GET(self):  # noqa: N802 (http.server's name)
                if self.path == "/tenant/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.root}/keys"}
                elif self.path == "/keys":
                    body = jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.root = f"http://{address}:{self.server.server_address[1]}"
        # The `iss` its tokens carry, which `serve`'s `[auth.oidc] issuer` names.
        self.url = f"{self.root}/tenant"

    @contextlib.contextmanager
    def serving(self):
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()

    def config(self, disable_local_auth: bool = True, assignments: dict[str, list[str]] | None = None) -> str:
        """The `ironhub.toml` text that trusts this issuer (60 s of clock skew)."""
        text = f"[auth]\ndisable_local_auth = {'true' if disable_local_auth else 'false'}\n"
        text += f"[auth.oidc]\nissuer = \"{self.url}\"\nclock_skew_seconds = 60\n"
        if assignments:
            text += "[auth.oidc.role_assignments]\n"
            text += "".join(f"\"{principal}\" = {json.dumps(roles)}\n" for principal, roles in assignments.items())
        return text

    def serve_args(self, workdir, **config) -> list[str]:
        """`serve`'s arguments for a config file (in `workdir`) that trusts this issuer."""
        path = workdir / "ironhub.toml"
        path.write_text(self.config(**config))
        return ["--config", str(path)]

    def token(self, roles=(), audience=HUB_AUDIENCE, key=RSA_KEY, kid="rsa-1", lifetime=600, nbf_in=0,
              oid=None, issuer=None, sub="tester") -> str:
        """A JWT with `roles`, for `audience`, valid `lifetime` seconds from now (negative:
        expired), signed with `key` under `kid`."""
        now = int(time.time())
        alg = "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        claims = {"iss": issuer or self.url, "aud": audience, "iat": now, "nbf": now + nbf_in,
                  "exp": now + lifetime, "oid": oid or str(uuid.uuid4()), "sub": sub,
                  "roles": list(roles)}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
        if alg == "RS256":
            signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            signature = int_bytes(r, 32) + int_bytes(s, 32)
        return f"{signing_input.decode()}.{b64url(signature)}"
