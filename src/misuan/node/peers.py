"""What a node asks its peers directly (not through a client)."""

from __future__ import annotations

from ..config import NodeConfig


def peers_hold(cfg: NodeConfig, rid: str) -> list[bool]:
    """Ask every peer whether it still holds runtime ``rid``. Only an explicit "no"
    counts: a peer that does not answer (busy, or down for now) could not join a
    new runtime either, and a grantee must not be able to drop a live one on a blip."""
    import ssl

    import httpx

    cl = cfg.cluster
    verify = ssl.create_default_context(cafile=str(cl.ca_cert)) if cl.tls and cl.ca_cert else True
    out = []
    for party in cl.parties:
        if party.rank == cfg.rank:
            continue
        try:
            with httpx.Client(verify=verify, timeout=cl.timeouts.http_connect_s) as http:
                r = http.get(f"{party.control_url}/v1/runtimes/{rid}/alive")
            out.append(not (r.status_code == 200 and r.json().get("alive") is False))
        except (httpx.HTTPError, ValueError):
            out.append(True)
    return out
