"""Registry authentication: Basic, or a bearer token from the registry's token service.

A 401's ``WWW-Authenticate`` challenge is answered once per new challenge: Basic with the
credentials, or ``Bearer realm=…`` (as GHCR does) by asking the realm for a token for the
challenge's service and scope. Credentials travel in headers only, never in a URL or a message.
"""

from __future__ import annotations

import base64
import re

import httpx

from ..errors import RegistryError
from .credentials import Credentials
from .retry import RETRYABLE_STATUS, Transient, retry_after_seconds

_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class Auth:
    def __init__(self, http: httpx.Client, host: str, credentials: Credentials | None) -> None:
        self._http, self.host, self._credentials = http, host, credentials
        self._token: str | None = None
        self._basic = False  # set once a Basic challenge was answered

    def header(self) -> dict[str, str]:
        if self._token:
            return {"Authorization": f"Bearer {self._token}"}
        if self._credentials and self._basic:
            return {"Authorization": "Basic " + _basic_value(self._credentials)}
        return {}

    def answer(self, response: httpx.Response) -> bool:
        """Answer a 401 challenge once; False when there is nothing new to try."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self._credentials is None or self._basic:
                return False
            self._basic = True
            return True
        if scheme == "bearer":
            params = dict(_CHALLENGE_RE.findall(challenge))
            realm = params.get("realm", "")
            if not realm:
                return False
            headers = {"Authorization": "Basic " + _basic_value(self._credentials)} if self._credentials else {}
            token_response = self._http.get(realm, params=_token_query(params), headers=headers)
            if token_response.status_code in RETRYABLE_STATUS:  # the token service is flaky, not refusing
                hint = retry_after_seconds(token_response.headers.get("Retry-After"))
                raise Transient(f"token service HTTP {token_response.status_code}", retry_after=hint)
            token = _token_from(token_response, self.host, realm, self._credentials)
            if token == self._token:
                return False  # the same token again: it does not grant what this request needs
            self._token = token
            return True
        return False


def _basic_value(creds: Credentials | None) -> str:
    assert creds is not None
    return base64.b64encode(f"{creds.username}:{creds.password.reveal()}".encode()).decode()


def _token_query(challenge: dict[str, str]) -> dict[str, str]:
    """A token request carries the challenge's ``service`` and ``scope`` only.

    Not ``realm``, and not the ``error="insufficient_scope"`` or ``error="invalid_token"`` that
    distribution adds when a token did not do: those describe the last answer, not the request.
    """
    return {key: challenge[key] for key in ("service", "scope") if challenge.get(key)}


def _token_from(response: httpx.Response, host: str, realm: str, creds: Credentials | None) -> str:
    """The bearer token of a token service's answer, or a one-line error that names who was refused."""
    if response.status_code not in (200, 401, 403):
        raise RegistryError(f"registry {host}: its token service {realm} answered HTTP {response.status_code}")
    if response.status_code != 200:
        if creds is None:
            raise RegistryError(
                f"registry {host}: no credentials given, and its token service {realm} refused anonymous "
                f"access (HTTP {response.status_code}); set SHIPYARD_REGISTRY_USERNAME and "
                f"SHIPYARD_REGISTRY_PASSWORD, or docker login {host}"
            )
        raise RegistryError(
            f"registry {host}: its token service {realm} refused the credentials of {creds.username!r} "
            f"(HTTP {response.status_code})"
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    # the Docker token spec says ``token``; OAuth2-style token services say ``access_token``
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise RegistryError(f"registry {host}: its token service {realm} answered HTTP 200 without a token")
    return token
