"""The site agent's local API: a Unix socket only the site's own user can open."""

from __future__ import annotations

import stat
from pathlib import Path

from client_app.agent.grpc_service import AgentClient, start_server
from client_app.agent.site_agent import SiteAgent
from common.plan import bundled_plan_path, load_plan
from protos.tessera.v1 import agent_pb2
from tests.federation import provision_sites, signed_task


def test_agent_socket_is_owner_only_and_refuses_unapproved_studies(tmp_path: Path) -> None:
    fed = provision_sites(tmp_path)
    site, vault = fed.sites["s"], fed.vaults["s"]
    server = start_server(SiteAgent(vault), site.socket_path)
    try:
        mode = stat.S_IMODE(site.socket_path.stat().st_mode)
        assert mode == 0o600
        assert stat.S_IMODE(site.root.stat().st_mode) == 0o700
        request = signed_task(fed.coordinator_key, agent_pb2.TASK_HELLO,
                              load_plan(bundled_plan_path("breast_cancer")))
        client = AgentClient(site.socket_path)
        reply = client.handle(request, timeout=60)
        client.close()
    finally:
        server.stop(grace=None)
    assert not reply.ok
    assert reply.error_code == "not_approved"
    assert reply.site == "s"
