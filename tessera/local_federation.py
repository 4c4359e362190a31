"""Build a local federation's work folder (DESIGN.md section 5) for ``tessera demo``.

The launcher plays every party on one machine, so it also acts as each site operator
(registering the site's partition, setting the site's privacy delta to the plan's, approving
the plan hash) and as the courier that carries the custodian site's CKKS key to the other
sites. The coordinator folder only ever receives the add-only evaluation context. Because it
plays every site, it also knows each site's split secret: :meth:`LocalFederation.site_split`
gives a site's train and held-out rows exactly as that site makes them (for the benchmark
reference and for tests), something no real coordinator can do. A demo site's split secret
is derived from its name (:func:`demo_split_secret`), so a demo holds out the same rows from
run to run; a real site's is random, made on first use.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client_app.custody.he_custody import import_sealed, keygen_and_seal
from client_app.custody.kit import import_site_kit
from client_app.custody.site_secrets import SPLIT_SECRET, split_secret
from client_app.custody.vault import SiteVault, create_vault
from client_app.datasets.validation import Policy
from client_app.datasets.versions import register_content
from client_app.governance.consent import withdraw
from client_app.governance.studies import decide, file_plan
from client_app.store.folder import SiteDir, init_site_dir, store_template
from client_app.store.site_store import SiteStore
from common.datasets import (
    TableData,
    csv_bytes,
    load_bundled,
    partition_indices,
    select,
)
from common.errors import ErrorCode, TesseraError
from common.plan import StudyPlan, plan_hash, plan_to_toml
from common.settings import DEFAULT_CEILING
from common.splits import keyed_split
from common.workdir import WorkDir
from privacy.manifest import load_manifest
from server.he_context import import_evaluation_package
from server.provisioning import init_federation

MARKER = ".tessera-demo"


@dataclass(frozen=True)
class LocalFederation:
    """Paths and parties of a freshly built local federation."""

    workdir: Path
    plan: StudyPlan
    plan_hash: str
    plan_path: Path
    sites: tuple[SiteDir, ...]
    custodian: str
    data: TableData
    partitions: tuple[tuple[int, ...], ...]
    passphrase: str = field(repr=False, default="")
    tls: bool = False
    #: Each site's split secret, in ``sites`` order (the launcher plays every site).
    split_secrets: tuple[bytes, ...] = field(repr=False, default=())
    #: Each site's unlocked vault, in ``sites`` order (as the launcher created them).
    vaults: tuple[SiteVault, ...] = field(repr=False, default=())

    def site_split(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Site ``index``'s (train, held-out) rows of :attr:`data`, as that site splits them."""
        rows = np.asarray(self.partitions[index], dtype=np.int64)
        return split_rows(self.data, rows, secret=self.split_secrets[index],
                          dataset=self.plan.dataset.name,
                          test_fraction=self.plan.dataset.test_fraction)

    @property
    def layout(self) -> WorkDir:
        """The work folder's paths."""
        return WorkDir(self.workdir)

    @property
    def coordinator_kit(self) -> Path:
        """The coordinator's kit (CA, SuperLink certificate, node public keys)."""
        return self.layout.coordinator.kit_dir

    @property
    def coordinator_dir(self) -> Path:
        """The coordinator's folder."""
        return self.layout.coordinator.root


def demo_split_secret(site: str) -> bytes:
    """The split secret of a demo site: fixed by its name, so demo runs are comparable."""
    return hashlib.sha256(b"tessera demo split secret\x00" + site.encode("utf-8")).digest()


def split_rows(data: TableData, rows: np.ndarray, *, secret: bytes, dataset: str,
               test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The (train, held-out) rows among ``rows`` of ``data`` under a site's split secret."""
    train_idx, test_idx = keyed_split(data.patient_ids[rows], data.y[rows], secret=secret,
                                      dataset=dataset, test_fraction=test_fraction)
    return rows[train_idx], rows[test_idx]


def prepare_workdir(workdir: Path) -> None:
    """Create an empty work folder; replace one only if an earlier demo made it."""
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise TesseraError(
                ErrorCode.CONFIG_INVALID,
                f"work folder '{workdir.name}' is not empty and was not made by tessera demo",
            )
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by tessera demo\n")


def site_names(count: int) -> list[str]:
    """Names of the demo sites."""
    return [f"site-{i}" for i in range(1, count + 1)]


def provision(workdir: Path, names: list[str], *, port: int) -> None:
    """Provision the federation (CA, certificates, keys, signed manifest) and hand out kits.

    As a real coordinator would, the launcher keeps only the coordinator kit; each site
    kit is imported (verified) into its site folder and the provisioning folder is removed,
    so no party's folder holds another party's private key. The site folders' stores start
    as copies of one migrated template (:func:`client_app.store.folder.store_template`).
    """
    layout = WorkDir(workdir)
    staging = workdir / ".provisioning"
    fed = init_federation(staging, name="tessera-demo", sites=names, port=port, archives=False)
    shutil.copy2(fed.manifest_path, layout.manifest_path)
    shutil.copytree(fed.coordinator_kit, layout.coordinator.kit_dir)
    shutil.copytree(fed.auditor_kit, layout.auditor.kit_dir)
    template = store_template(staging / "site-store-template.db")
    for name in names:
        init_site_dir(layout.site(name).root, name=name, store_template=template)
        import_site_kit(fed.site_kit(name), layout.site(name).root,
                        expected_coordinator_key=fed.manifest.coordinator_signing_key)
    shutil.rmtree(staging)


def build(workdir: Path, plan: StudyPlan, *, sites: int, ceilings: dict[str, float],
          passphrase: str, tls: bool = False, port: int = 9092,
          default_ceiling: float = DEFAULT_CEILING,
          parts: list[np.ndarray] | None = None,
          simulation_only: bool = False) -> LocalFederation:
    """Provision a coordinator, ``sites`` hospitals and an auditor folder in ``workdir``.

    Each site holds its partition of the bundled data, or ``parts[i]`` (row indices) when
    given (simulations of more sites than the data can be split into). ``simulation_only``
    (``tessera simulate``'s throwaway folders) gives the keystores a cheap key derivation
    (:data:`client_app.custody.vault.SIMULATION_ONLY_SCRYPT_N`).
    """
    if sites < 1:
        raise TesseraError(ErrorCode.CONFIG_INVALID, "--sites must be at least 1")
    prepare_workdir(workdir)
    digest = plan_hash(plan)
    layout = WorkDir(workdir)
    coordinator = layout.coordinator
    for folder in (coordinator.root, coordinator.studies_dir, layout.auditor.root):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Always provisioned: sites accept only tasks signed by the coordinator and sums of
    # contributions signed by sites; ``tls`` only decides the transport.
    provision(workdir, site_names(sites), port=port)
    plan_path = coordinator.plan_path(digest)
    plan_path.write_text(plan_to_toml(plan), encoding="utf-8")

    data = select(load_bundled(plan.dataset.name), plan.dataset)
    if parts is None:
        parts = partition_indices(data.y, sites, seed=plan.seed,
                                  scheme=plan.dataset.partition, alpha=plan.dataset.alpha)
    elif len(parts) != sites:
        raise TesseraError(ErrorCode.CONFIG_INVALID, f"parts: {len(parts)} for {sites} sites")
    site_dirs: list[SiteDir] = []
    vaults: list[SiteVault] = []
    raw = load_bundled(plan.dataset.name)
    plan_toml = plan_to_toml(plan)
    for name, rows in zip(site_names(sites), parts, strict=True):
        site = init_site_dir(layout.site(name).root, name=name)
        vault = create_vault(site, passphrase, simulation_only=simulation_only)
        vault.write_secret(SPLIT_SECRET, demo_split_secret(name))
        content = csv_bytes(raw, rows)
        register_content(vault, content, source_name=f"{name}.csv", plan=plan,
                         policy=Policy(), actor="demo-operator")
        with SiteStore.open(site) as store:
            store.set_ceiling(ceilings.get(name, default_ceiling), actor="demo-operator",
                              confirm_raise=True)
            # Account at the plan's delta: a lowering from the site's default (never a raise).
            default = store.site_delta(plan.dataset.name)
            if plan.privacy.delta > default.value:
                raise TesseraError(
                    ErrorCode.CONFIG_INVALID,
                    f"privacy.delta: {plan.privacy.delta:g} is above what demo site {name} "
                    f"accepts for its {default.rows} rows ({default.value:.3g} = 1/(10 n))")
            store.set_delta(plan.privacy.delta, actor="demo-operator")
            if not plan.privacy.dp:  # the operator approving a non-private plan allows them
                store.set_allow_non_private(True, actor="demo-operator", confirm=True)
            # The operator receives the plan file (its summary is for reading, not kept).
            file_plan(store, plan, plan_toml, digest=digest, source="file")
        decide(site, digest, "approved", actor="demo-operator", note="approved by tessera demo")
        _demo_opt_out(vault, plan, raw, rows, count=2 if name == "site-1" else 1)
        site_dirs.append(site)
        vaults.append(vault)

    custodian = site_dirs[0]
    if plan.he.enabled:
        _key_ceremony(workdir, plan, vaults)
    return LocalFederation(workdir, plan, digest, plan_path, tuple(site_dirs), custodian.name,
                           data, tuple(tuple(int(i) for i in p) for p in parts), passphrase,
                           tls, tuple(split_secret(v) for v in vaults), tuple(vaults))


def _demo_opt_out(vault: SiteVault, plan: StudyPlan, raw: TableData,
                  rows: np.ndarray, *, count: int) -> None:
    """``count`` patients of a site opt out, so every demo site shows consent in action.

    They come from the site's training rows (as the site splits them): the held-out rows
    stay those of the partition.
    """
    train_rows, _ = split_rows(raw, np.asarray(rows, dtype=np.int64),
                               secret=split_secret(vault), dataset=plan.dataset.name,
                               test_fraction=plan.dataset.test_fraction)
    patients = [str(p) for p in raw.patient_ids[train_rows[:count]]]
    withdraw(vault, patients, actor="demo-operator", note="opted out")


def _key_ceremony(workdir: Path, plan: StudyPlan, vaults: list[SiteVault]) -> None:
    """The custodian seals the study key to each site; the coordinator gets the package."""
    layout = WorkDir(workdir)
    manifest = load_manifest(layout.manifest_path)
    outbox = vaults[0].site.outbox_for(plan_hash(plan))
    # The launcher plays every site operator: each demo site is a confirmed recipient.
    result = keygen_and_seal(vaults[0], plan, manifest, outbox,
                             recipients=[v.site.name for v in vaults[1:]],
                             actor="demo-operator")
    for vault in vaults[1:]:
        import_sealed(vault, result.sealed[vault.site.name].read_bytes(), manifest)
    import_evaluation_package(layout.coordinator.he_dir, result.package.read_bytes(), manifest)


def describe(fed: LocalFederation) -> str:
    """One-line JSON summary (for logs)."""
    return json.dumps({"sites": [s.name for s in fed.sites], "plan_hash": fed.plan_hash})
