"""HTTP transport to one node; translates httpx and API errors to misuan errors."""

from __future__ import annotations

import hashlib
import ssl
from typing import Callable

import httpx

from .. import errors as E
from ..audit_heads import RECEIPT_HEADER
from ..config import CLIENT_KEEP_ALIVE_S, ClusterConfig, PartySpec
from ..identity import BODY_HEADER, Identity

#: the only routes a node answers without an audit receipt
_NO_RECEIPT = ("/v1/health", "/v1/audit/head")


def _chunks(parts, step: int = 4 << 20):
    """Yield memoryview slices: httpcore re-slices what it sends, which copies
    ``bytes`` each time (quadratic for a large body) but is free on a view."""
    for part in parts:
        view = memoryview(part)
        for off in range(0, len(view), step):
            yield view[off : off + step]


def _sha256(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


class SignRequests(httpx.Auth):
    """Signs every request for one node with the principal's key (see :mod:`misuan.identity`).

    A streamed body must come with its SHA-256 in ``X-Misuan-Content-SHA256``;
    other bodies are hashed here."""

    def __init__(self, identity: Identity, party_id: str):
        self.identity = identity
        self.party_id = party_id

    def __call__(self, request: httpx.Request) -> httpx.Request:
        declared = request.headers.get(BODY_HEADER) or hashlib.sha256(request.content).hexdigest()
        request.headers.update(self.identity.sign_request(self.party_id, request.method, request.url.raw_path.decode("ascii"), declared))
        return request

    def auth_flow(self, request: httpx.Request):
        yield self(request)


class NodeClient:
    """Typed calls to one node's control API."""

    def __init__(self, cluster: ClusterConfig, party: PartySpec, identity: Identity, receipts=None):
        self.party = party
        #: a :class:`~misuan.client.receipts.ReceiptBook` that keeps this node's signed receipts
        self.receipts = receipts
        self.name = f"node {party.rank} ({party.id} at {party.control_url})"
        t = cluster.timeouts
        verify: ssl.SSLContext | bool = True
        if cluster.tls:
            verify = ssl.create_default_context(cafile=str(cluster.ca_cert))
        self._read_timeout = t.http_read_s
        self._http = httpx.Client(
            base_url=party.control_url,
            auth=SignRequests(identity, party.id),
            timeout=httpx.Timeout(t.http_read_s, connect=t.http_connect_s),
            verify=verify,
            # drop idle connections well before the node does (config.NODE_KEEP_ALIVE_S), so a
            # request never races the server closing its side
            limits=httpx.Limits(keepalive_expiry=CLIENT_KEEP_ALIVE_S),
        )

    def __repr__(self) -> str:
        return f"NodeClient({self.name})"

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, *, timeout: float | None | str = "default", **kw) -> httpx.Response:
        extra = {} if timeout == "default" else {"timeout": httpx.Timeout(timeout, connect=self._http.timeout.connect)}
        try:
            try:
                resp = self._http.request(method, path, **extra, **kw)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                if method != "GET":
                    raise
                # a pooled keep-alive connection the node had already closed: GETs are
                # idempotent, so once more on a fresh connection (a dead node then fails
                # to connect and is reported as unreachable)
                resp = self._http.request(method, path, **extra, **kw)
        except httpx.ConnectError:
            raise E.NodeUnavailable(f"{self.name} is unreachable", party=self.party.rank, url=self.party.control_url) from None
        except httpx.TimeoutException:
            raise E.NodeTimeout(f"{self.name} did not answer in time", party=self.party.rank, url=self.party.control_url) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            raise E.NodeUnavailable(
                f"{self.name} dropped the connection (node stopped?)", party=self.party.rank, url=self.party.control_url
            ) from None
        except httpx.HTTPError as exc:
            raise E.NodeError(f"{self.name}: {type(exc).__name__}", party=self.party.rank, url=self.party.control_url) from None
        if resp.status_code >= 400:
            self._raise(resp)
        self._keep_receipt(resp)
        return resp

    def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        content: bytes | None = None,
        params: dict | None = None,
        timeout: float | None | str = "default",
        sink: Callable[[bytes], object] | None = None,
    ) -> httpx.Response:
        """A signed call to one of this node's routes (a capability's own), errors mapped as for every call.

        With ``sink``, the response body is not kept: each chunk (up to 1 MiB) goes to
        ``sink`` as it arrives, and the returned response has no content.
        """
        if sink is None:
            return self._request(method, path, json=json, content=content, params=params, timeout=timeout)
        extra = {} if timeout == "default" else {"timeout": httpx.Timeout(timeout, connect=self._http.timeout.connect)}
        try:
            with self._http.stream(method, path, json=json, content=content, params=params, **extra) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    self._raise(resp)
                self._keep_receipt(resp)
                for chunk in resp.iter_bytes(1 << 20):
                    sink(chunk)
        except httpx.TransportError:
            raise E.NodeUnavailable(f"{self.name} dropped the connection", party=self.party.rank, url=self.party.control_url) from None
        return resp

    def _keep_receipt(self, resp: httpx.Response) -> None:
        if self.receipts is None or resp.request.url.path in _NO_RECEIPT:
            return
        receipt = resp.headers.get(RECEIPT_HEADER)
        if receipt is None:
            raise E.IntegrityError(f"{self.name} answered without a signed audit receipt")
        self.receipts.record(self.party, receipt, lambda: self.audit_head()["public_key"])

    def audit_head(self) -> dict:
        """The node's signed audit head (no principal needed)."""
        return self._request("GET", "/v1/audit/head").json()

    def _raise(self, resp: httpx.Response) -> None:
        try:
            body = resp.json()
            kind, message, peer = body.get("error"), body.get("message"), body.get("peer")
        except ValueError:
            kind, message, peer = None, None, None
        if isinstance(peer, int) and peer != self.party.rank:
            # This node is fine; it reports that another one went silent.
            err = E.NodeTimeout(f"node {peer} stopped answering on the SPU link (reported by {self.name})", party=peer, url=None)
            err.reported_by = self.party.rank  # type: ignore[attr-defined]
            raise err
        cls = E.from_wire(kind, E.HTTP_ERRORS.get(resp.status_code, E.NodeError))
        text = f"{self.name}: {message or resp.reason_phrase or resp.status_code}"
        if issubclass(cls, E.NodeError):
            raise cls(text, party=self.party.rank, url=self.party.control_url)
        err = cls(text)
        err.party = self.party.rank  # type: ignore[attr-defined]
        raise err

    # ------------------------------------------------------------ API

    def whoami(self) -> dict:
        return self._request("GET", "/v1/whoami").json()

    def principals(self) -> list[dict]:
        return self._request("GET", "/v1/principals").json()

    def register_principal(self, name: str, public_key: str) -> dict:
        return self._request("POST", "/v1/principals", json={"principal": name, "public_key": public_key}).json()

    def revoke_principal(self, name: str) -> dict:
        return self._request("DELETE", f"/v1/principals/{name}").json()

    def health(self) -> dict:
        return self._request("GET", "/v1/health").json()

    def status(self) -> dict:
        return self._request("GET", "/v1/status").json()

    def audit(self, n: int = 50) -> list[dict]:
        return self._request("GET", "/v1/audit", params={"n": n}).json()

    def create_session(self, sid: str, kind: str = "run") -> str:
        return self._request("POST", "/v1/sessions", json={"session_id": sid, "kind": kind}).json()["link_address"]

    def link(self, sid: str, addresses: list[str], timeout: float) -> float:
        return self._request("POST", f"/v1/sessions/{sid}/link", json={"addresses": addresses}, timeout=timeout).json()["seconds"]

    def ping(self, sid: str, nonce: str) -> None:
        self._request("POST", f"/v1/sessions/{sid}/ping", json={"nonce": nonce})

    def _size_timeout(self, nbytes: int) -> float:
        """Read timeout for a transfer: the configured one, stretched at 20 MB/s."""
        return max(self._read_timeout, nbytes / 20e6)

    def put_var(self, sid: str, name: str, data: bytes) -> None:
        self._request(
            "PUT",
            f"/v1/sessions/{sid}/vars/{name}",
            content=_chunks([data]),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data)), BODY_HEADER: _sha256([data])},
            timeout=self._size_timeout(len(data)),
        )

    def get_var(self, sid: str, name: str) -> bytes:
        return self._request("GET", f"/v1/sessions/{sid}/vars/{name}").content

    def run(self, sid: str, program: bytes, sha256: str) -> dict:
        # No read timeout: a run ends when it ends; peers time out on the link if one of them is lost.
        return self._request(
            "POST",
            f"/v1/sessions/{sid}/run",
            content=program,
            headers={"Content-Type": "application/octet-stream", "X-Misuan-Program-Sha256": sha256},
            timeout=None,
        ).json()

    def close_session(self, sid: str, timeout: float = 30) -> None:
        self._request("DELETE", f"/v1/sessions/{sid}", timeout=timeout)

    # ------------------------------------------------------------ models

    def list_models(self, kind: str = "model") -> list[dict]:
        return self._request("GET", f"/v1/{kind}s").json()

    def show_model(self, name: str, version: int | None = None, kind: str = "model") -> dict:
        params = {"version": version} if version is not None else {}
        return self._request("GET", f"/v1/{kind}s/{name}", params=params).json()

    def model_tokenizer(self, name: str, version: int | None = None, kind: str = "model") -> str:
        params = {"version": version} if version is not None else {}
        return self._request("GET", f"/v1/{kind}s/{name}/tokenizer", params=params).text

    def begin_upload(self, name: str, body: dict, kind: str = "model") -> str:
        return self._request("POST", f"/v1/{kind}s/{name}/uploads", json=body).json()["upload_id"]

    def put_tensor(self, uid: str, tensor: str, parts: list[bytes | memoryview] | bytes | memoryview) -> dict:
        """Stream one share (given as consecutive byte parts) without joining them."""
        views = [memoryview(p) for p in (parts if isinstance(parts, list) else [parts])]
        return self._request(
            "PUT",
            f"/v1/uploads/{uid}/tensors/{tensor}",
            content=_chunks(views),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(sum(len(v) for v in views)),
                BODY_HEADER: _sha256(views),
            },
            timeout=None,
        ).json()

    def prepare_upload(self, uid: str) -> dict:
        return self._request("POST", f"/v1/uploads/{uid}/prepare").json()

    def commit_upload(self, uid: str) -> dict:
        return self._request("POST", f"/v1/uploads/{uid}/commit", timeout=300).json()

    def abort_upload(self, uid: str) -> None:
        self._request("DELETE", f"/v1/uploads/{uid}", timeout=60)

    def remove_model(self, name: str, version: int | None = None, kind: str = "model") -> list[int]:
        params = {"version": version} if version is not None else {}
        return self._request("DELETE", f"/v1/{kind}s/{name}", params=params, timeout=300).json()["removed"]

    def grant(self, name: str, to: str, kind: str = "model", scope: str | None = None) -> None:
        self._request("PUT", f"/v1/{kind}s/{name}/grants/{to}", params={"scope": scope} if scope else {})

    def revoke(self, name: str, to: str, kind: str = "model") -> bool:
        return self._request("DELETE", f"/v1/{kind}s/{name}/grants/{to}").json()["revoked"]

    def runtime_state(self, name: str, version: int | None, kind: str = "model") -> dict:
        params = {"version": version} if version is not None else {}
        return self._request("GET", f"/v1/{kind}s/{name}/runtime", params=params).json()

    def runtime_prepare(self, name: str, version: int, rid: str, kind: str = "model") -> dict:
        return self._request("POST", f"/v1/{kind}s/{name}/runtime", json={"version": version, "runtime_id": rid}).json()

    def runtime_link(self, name: str, version: int, rid: str, addresses: list[str], kind: str = "model") -> dict:
        return self._request(
            "POST", f"/v1/{kind}s/{name}/runtime/{rid}/link", json={"version": version, "addresses": addresses}, timeout=None
        ).json()

    def runtime_put(self, name: str, version: int, rid: str, request: str, var: str, data: bytes, kind: str = "model") -> None:
        self._request(
            "PUT",
            f"/v1/{kind}s/{name}/runtime/{rid}/requests/{request}/vars/{var}",
            params={"version": version},
            content=_chunks([data]),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data)), BODY_HEADER: _sha256([data])},
            timeout=self._size_timeout(len(data)),
        )

    def program_compile(self, name: str, version: int, program: str, params: dict | None = None, kind: str = "model") -> dict:
        return self._request(
            "POST",
            f"/v1/{kind}s/{name}/programs/compile",
            json={"version": version, "program": program, "params": params or {}},
            timeout=None,
        ).json()

    def runtime_run(
        self, name: str, version: int, rid: str, request: str, program: str, params: dict | None = None, kind: str = "model"
    ) -> dict:
        return self._request(
            "POST",
            f"/v1/{kind}s/{name}/runtime/{rid}/requests/{request}/run",
            json={"version": version, "program": program, "params": params or {}},
            timeout=None,
        ).json()

    def runtime_get(self, name: str, version: int, rid: str, request: str, var: str, kind: str = "model") -> bytes:
        return self._request("GET", f"/v1/{kind}s/{name}/runtime/{rid}/requests/{request}/vars/{var}", params={"version": version}).content

    def runtime_end(self, name: str, version: int, rid: str, request: str, kind: str = "model") -> None:
        self._request("DELETE", f"/v1/{kind}s/{name}/runtime/{rid}/requests/{request}", params={"version": version}, timeout=60)

    def runtime_handover(self, source: dict, target: dict, names: list[str]) -> dict:
        """Move this node's shares of exported request outputs between two runtimes (inside the node)."""
        return self._request("POST", "/v1/runtimes/handover", json={"source": source, "target": target, "vars": names}, timeout=120).json()
