"""Test helpers: provisioned sites and tasks signed as the federation's coordinator signs them.

Sites accept only tasks signed with the coordinator's key from their signed manifest, so a
test that talks to an agent directly provisions a small federation first and signs its tasks
with :func:`signed_task` (the coordinator's own code path, ``server.tasks.sign_task``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client_app.custody.kit import import_site_kit
from client_app.custody.vault import SiteVault, create_vault
from client_app.store.folder import SiteDir, init_site_dir
from common.plan import StudyPlan, plan_hash, plan_to_toml
from privacy.signing import SigningKey
from protos.tessera.v1 import agent_pb2
from server.provisioning import init_federation
from server.tasks import sign_task


@dataclass(frozen=True)
class TestFederation:
    """Provisioned sites (kit imported, vault created) and the coordinator's signing key."""

    sites: dict[str, SiteDir]
    vaults: dict[str, SiteVault]
    coordinator_key: SigningKey
    site_keys_dir: Path


def provision_sites(root: Path, names: tuple[str, ...] = ("s",), *,
                    passphrase: str = "pw") -> TestFederation:
    """Provision a federation of ``names`` under ``root`` and set each site up."""
    fed = init_federation(root / "provisioning", name="test", sites=list(names),
                          archives=False)
    sites, vaults = {}, {}
    for name in names:
        import_site_kit(fed.site_kit(name), root / name,
                        expected_coordinator_key=fed.manifest.coordinator_signing_key)
        sites[name] = init_site_dir(root / name, name=name)
        vaults[name] = create_vault(sites[name], passphrase)
    key = SigningKey(bytes.fromhex(
        (fed.coordinator_kit / "signing.key").read_text(encoding="ascii").strip()))
    return TestFederation(sites, vaults, key, root / "provisioning")


def signed_task(key: SigningKey, kind: int, plan: StudyPlan, *, run_id: str = "r1",
                round_: int = 0, plan_toml: bytes | None = None,
                digest: str | None = None) -> agent_pb2.TaskRequest:
    """A task signed by the coordinator's ``key`` (``plan_toml``/``digest`` override the
    plan's own text and hash, to send a mismatching plan)."""
    request = agent_pb2.TaskRequest(
        kind=kind, plan_toml=plan_toml if plan_toml is not None else plan_to_toml(plan).encode(),
        plan_hash=digest or plan_hash(plan), run_id=run_id, round=round_)
    return sign_task(request, key)
