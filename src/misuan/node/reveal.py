"""The only way a share leaves a node.

A node answers with a share of a variable only if that variable is *declared
readable* in its session:

* a client's own session: the variables the client set and the outputs of the
  programs it ran there (``SessionManager.set_var`` / ``run`` declare them);
* a model runtime: the outputs a node-compiled program declares revealable
  (e.g. the sampled token id), for the request of the principal that ran it
  (``Runtimes`` declares them after the run and withdraws them when the
  request ends). Stored weights are never declared, so no route returns them.

Everything else that reads a share out of a worker is named ``unsafe_*`` and is
called from here only.
"""

from __future__ import annotations

from ..errors import NotFound
from .sessions import Session, SessionManager


def reveal_declared_output(sessions: SessionManager, sess: Session, name: str, requester: str) -> bytes:
    """This node's share of ``name`` for ``requester`` (whose right to the session or
    request the caller checked), if the session declares it readable; else NotFound.
    Audited."""
    if name not in sess.readable:
        raise NotFound("unknown variable")
    data = sessions.unsafe_read_share(sess, name)
    sessions.audit.append(
        "model.output.get" if sess.internal else "session.var.get",
        asset=sess.kind,
        requester=requester,
        bytes_out=len(data),
        detail={"session": sess.id, "var": name},
    )
    return data


__all__ = ["reveal_declared_output"]
