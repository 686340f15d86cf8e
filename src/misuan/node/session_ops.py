"""What a session's worker is asked to do: store shares and public values, run a
program, reveal a check's verdict among the nodes, read a share for :mod:`.reveal`.

:class:`SessionOps` is mixed into :class:`.sessions.SessionManager`, which provides
``_call``, ``_require_linked``, ``_op_timeout`` and ``audit``. A client's session and
a node-internal one (a model runtime) differ in the names they may use and in what
becomes readable; the session's kind decides, never a caller's flag."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidInput, MisuanError, NotFound
from .names import bind_request, check_client_var_name, check_var_name

if TYPE_CHECKING:
    from .audit import AuditLog
    from .sessions import Session


class SessionOps:
    """The worker-call side of :class:`.sessions.SessionManager`."""

    audit: AuditLog

    def ping(self, sess: Session, nonce: str) -> None:
        self._require_linked(sess)
        self._call(sess, {"op": "ping", "nonce": nonce}, timeout=self._op_timeout())

    def unsafe_call(self, sess: Session, header: dict, payload: bytes = b"", timeout: float | None = None):
        """Send any command to the session's worker, unchecked (it could read a share):
        node core only, with commands it builds itself."""
        return self._call(sess, header, payload, timeout)

    def set_var(self, sess: Session, name: str, data: bytes) -> None:
        """Store a share; in a client's own session the client may read it back."""
        (check_var_name if sess.internal else check_client_var_name)(name)
        self._require_linked(sess)
        self._call(sess, {"op": "set_var", "name": name}, data, timeout=self._op_timeout())
        sess.bytes_in += len(data)
        sess.held.add(name)
        if not sess.internal:
            sess.readable.add(name)
            self.audit.append(
                "session.var.put", asset=sess.kind, requester=sess.principal, bytes_in=len(data), detail={"session": sess.id, "var": name}
            )

    def set_public(self, sess: Session, name: str, array) -> None:
        """Set a PUBLIC variable from a value this node computed (never client bytes)."""
        import numpy as np

        check_var_name(name)
        self._require_linked(sess)
        arr = np.ascontiguousarray(array)
        header = {"op": "set_public", "name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        self._call(sess, header, arr.tobytes(), timeout=self._op_timeout())
        sess.held.add(name)

    def reveal_flag(self, sess: Session, name: str) -> bool:
        """Reveal a secret boolean among the nodes (a check's verdict); never to a client."""
        check_var_name(name)
        self._require_linked(sess)
        reply, _ = self._call(sess, {"op": "reveal_flag", "name": name}, timeout=self._op_timeout())
        return bool(reply["value"])

    def unsafe_read_share(self, sess: Session, name: str) -> bytes:
        """This node's share of ``name``, unchecked: for :mod:`.reveal` only, which
        returns it only when the session declares ``name`` readable."""
        (check_var_name if sess.internal else check_client_var_name)(name)
        self._require_linked(sess)
        if name not in sess.held:
            raise NotFound("unknown variable")
        _, data = self._call(sess, {"op": "get_var", "name": name}, timeout=self._op_timeout())
        sess.bytes_out += len(data)
        return data

    def run(self, sess: Session, program: bytes, sha256: str, *, request: str | None = None) -> dict:
        """Run a program.

        A client's session: the program reads only variables the client set
        (or earlier outputs), writes only unreserved names, and its outputs
        become readable by the client. A node-internal session (a model runtime)
        runs only programs the node compiled itself, for ``request``; their
        names are resolved by the worker and their outputs stay unreadable
        unless the caller marks them."""
        from ..mpc import _pb

        if sess.internal != (request is not None):
            raise InvalidInput("node programs run in node sessions only, with a request")
        self._require_linked(sess)
        try:
            names_in, names_out, has_code = _pb.executable_names(program)
        except InvalidInput:
            raise InvalidInput("program is not a valid SPU executable") from None
        if not has_code:
            raise InvalidInput("program is empty")
        names_in, names_out = list(names_in), list(names_out)
        # the worker checks that libspu's own parse of the program sees these names
        header = {"op": "run", "sha256": sha256, "names": [list(names_in), list(names_out)]}
        if request is None:
            for n in names_in + names_out:
                check_client_var_name(n)
            missing = [n for n in names_in if n not in sess.readable]
            if missing:
                raise InvalidInput(f"program inputs not set in this session: {', '.join(missing[:5])}")
        else:
            header["request"] = request
            names_in = bind_request(names_in, request)
            names_out = bind_request(names_out, request)
            for n in names_out:
                check_var_name(n)
        sess.state = "running"
        try:
            reply, _ = self._call(sess, header, program, timeout=None)
        except MisuanError as exc:
            if request is None:  # a node program's failure is audited by its caller
                self.audit.append(
                    "session.run",
                    asset=sess.kind,
                    requester=sess.principal,
                    status="failed",
                    detail={"session": sess.id, "program": sha256, "error": type(exc).__name__},
                )
            raise
        finally:
            if sess.state == "running":
                sess.state = "linked"
        sess.runs += 1
        sess.held.update(names_out)
        if request is None:
            sess.readable.update(names_out)
            self.audit.append(
                "session.run",
                asset=sess.kind,
                requester=sess.principal,
                detail={"session": sess.id, "program": sha256, "send_bytes": reply.get("send_bytes", 0)},
            )
        reply.pop("ok", None)
        reply["outputs"] = names_out
        return reply
