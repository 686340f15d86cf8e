"""PSI on a node comes from its capability: its routes and its jobs, in-process (one node)."""

from fastapi.testclient import TestClient

from misuan.client.transport import SignRequests
from misuan.cluster.init import init_cluster
from misuan.config import load_node
from misuan.identity import load_identity
from misuan.node.app import create_app
from misuan.node.service import NodeService
from misuan.psi.jobs import PsiJobs
from misuan.psi.node import CAPABILITY


def test_routes_and_jobs_come_from_the_capability(tmp_path):
    init_cluster(tmp_path, parties=3)
    cfg = load_node(tmp_path / "node0" / "node.toml")
    auth = SignRequests(load_identity(tmp_path / "admin.key"), "node0")
    bare = NodeService(cfg)
    assert bare.context.jobs == {}
    with TestClient(create_app(bare), base_url="http://127.0.0.1") as tc:
        assert tc.get("/v1/datasets", auth=auth).status_code == 404  # a node without PSI has no PSI routes
    svc = NodeService(cfg, (CAPABILITY,))
    jobs = svc.context.jobs["psi"]
    assert isinstance(jobs, PsiJobs) and jobs.datasets is not None
    with TestClient(create_app(svc), base_url="http://127.0.0.1") as tc:
        assert tc.get("/v1/datasets", auth=auth).json() == []
        assert tc.get("/v1/psi/jobs/nosuchjob0", auth=auth).json()["error"] == "NotFound"
        jobs.root.mkdir(parents=True, exist_ok=True)
    assert not jobs.root.exists()  # the node's stop shut the jobs down (their directory is gone)
