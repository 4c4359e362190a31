"""Mutual TLS for the prediction service: a verified client certificate names the caller's role.

With ``--tls-client-ca CA.pem`` the service completes a TLS handshake only with clients whose
certificate that CA signed (``ssl.CERT_REQUIRED``). The certificate then stands for the
caller, and no API token is needed:

* its **organizational unit** (``OU``, ``organizationalUnitName``) names the role: exactly one
  OU must be a role of the access policy (``coordinator``, ``site_operator``, ``auditor``);
  the policy (``tessera/roles.toml``, its ``api ...`` entries) then decides what the role may
  call, exactly as for a token of that role;
* its **common name** (``CN``) names the caller (e.g. ``ehr-gateway``); it is for the
  operator's records and is never logged with request content.

A certificate with no role OU, or with several, is refused (403). Issuing, renewing and
revoking client certificates is the hospital PKI's job (a CA for the service alone, short
lifetimes); the service reads the CA file at start-up. Without ``--tls-client-ca``, bearer
tokens work as before (over TLS or on loopback).

Uvicorn does not hand the peer certificate to the application, so :class:`PeerCertProtocol`
(uvicorn's h11 protocol) reads it from the TLS connection when the connection is made and
puts the parsed :class:`ClientIdentity` in the connection's request state
(:data:`PEER_STATE_KEY`), where the endpoints find it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from common.roles import Role

#: Key of the verified client identity in each request's ASGI ``state``.
PEER_STATE_KEY = "tessera_tls_peer"


@dataclass(frozen=True)
class ClientIdentity:
    """The subject of a verified client certificate."""

    common_name: str
    organizational_units: tuple[str, ...]

    @property
    def role(self) -> Role | None:
        """The one role the certificate's OUs name, or None (none, or several)."""
        roles = {Role(ou) for ou in self.organizational_units if ou in set(Role)}
        return next(iter(roles)) if len(roles) == 1 else None


def identity_of(peercert: dict[str, Any] | None) -> ClientIdentity | None:
    """The identity in ``ssl.SSLSocket.getpeercert()``'s dict (None without a certificate)."""
    if not peercert:
        return None
    names: dict[str, list[str]] = {}
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            names.setdefault(str(key), []).append(str(value))
    return ClientIdentity(common_name=(names.get("commonName") or [""])[0],
                          organizational_units=tuple(names.get("organizationalUnitName", [])))


class PeerCertProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the verified client certificate in the request state."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        peer = identity_of(ssl_object.getpeercert()) if ssl_object is not None else None
        # app_state is copied into every request's scope["state"] on this connection.
        self.app_state = {**self.app_state, PEER_STATE_KEY: peer}
