"""The work folder layout (DESIGN.md section 5): every path of ``WORKDIR/``, named once.

Tests and tools rely on this layout; code builds these paths only through the classes
below, never from string literals of its own::

    WORKDIR/
      federation.toml          manifest: sites, addresses, public keys (signed)
      coordinator/             CoordinatorDir: kit/, he/, studies/<hash16>.toml,
                               runs/<id>/ (submitted.json, progress.jsonl, result.json),
                               coordinator.db, models/, cards/, superlink.db,
                               audit/coordinator.log,
                               app/, run-config.toml, flwr-home/, run/, logs/
      sites/<site>/            SiteDir: site.toml, site.db, keys/, data/, audit/site.log,
                               models/, kit/, run/, logs/, agent.sock, outbox/, flwr-home/
      auditor/                 AuditorDir: kit/, pulled/<party>.log
      report.json              the run report
      logs/                    the launcher's process logs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# -- names inside WORKDIR/ ------------------------------------------------------------------
MANIFEST = "federation.toml"
COORDINATOR = "coordinator"
SITES = "sites"
AUDITOR = "auditor"
REPORT = "report.json"
LOGS = "logs"

# -- names shared by several parties' folders -----------------------------------------------
KIT = "kit"
AUDIT = "audit"
MODELS = "models"
FLOWER_HOME = "flwr-home"

# -- names inside coordinator/ --------------------------------------------------------------
HE = "he"
STUDIES = "studies"
RUNS = "runs"
COORDINATOR_DB = "coordinator.db"
CARDS = "cards"
SUPERLINK_DB = "superlink.db"
COORDINATOR_LOG = "coordinator.log"
APP = "app"
RUN_CONFIG = "run-config.toml"
RUN_PROGRESS = "progress.jsonl"
RUN_RESULT = "result.json"
RUN_SUBMISSION = "submitted.json"

# -- names inside sites/<site>/ -------------------------------------------------------------
SITE_CONFIG = "site.toml"
SITE_DB = "site.db"
KEYS = "keys"
DATA = "data"
SITE_LOG = "site.log"
RUN = "run"
AGENT_SOCKET = "agent.sock"
OUTBOX = "outbox"

# -- names inside auditor/ ------------------------------------------------------------------
PULLED = "pulled"

#: How many hex digits of a plan hash name its files (studies/<hash16>.toml, outbox/<hash16>/).
PLAN_PREFIX = 16


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of the SQLite file ``path``."""
    return f"sqlite:///{path}"


def site_config(root: Path) -> Path:
    """``site.toml`` of the site folder ``root``: a folder without it is not initialised."""
    return Path(root) / SITE_CONFIG


@dataclass(frozen=True)
class SiteDir:
    """The paths inside one site folder (``WORKDIR/sites/<site>/`` or anywhere else)."""

    root: Path
    name: str

    @property
    def config_path(self) -> Path:
        """``site.toml``: the site name and creation time."""
        return site_config(self.root)

    @property
    def db_path(self) -> Path:
        """The site store's SQLite file."""
        return self.root / SITE_DB

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the site store."""
        return sqlite_url(self.db_path)

    @property
    def keys_dir(self) -> Path:
        """Sealed key material of the site."""
        return self.root / KEYS

    @property
    def data_dir(self) -> Path:
        """Registered datasets (encrypted at rest)."""
        return self.root / DATA

    @property
    def audit_dir(self) -> Path:
        """The site's audit trail."""
        return self.root / AUDIT

    @property
    def audit_log(self) -> Path:
        """The site's hash-chained audit log."""
        return self.audit_dir / SITE_LOG

    @property
    def models_dir(self) -> Path:
        """Models the site kept (encrypted at rest)."""
        return self.root / MODELS

    @property
    def kit_dir(self) -> Path:
        """The installed site kit (manifest, CA, node-authentication key)."""
        return self.root / KIT

    @property
    def run_dir(self) -> Path:
        """The running node's pid and state files."""
        return self.root / RUN

    @property
    def logs_dir(self) -> Path:
        """Logs of the site's processes."""
        return self.root / LOGS

    @property
    def socket_path(self) -> Path:
        """Local socket of the site agent."""
        return self.root / AGENT_SOCKET

    @property
    def outbox_dir(self) -> Path:
        """Files the site hands to other parties (e.g. sealed study keys)."""
        return self.root / OUTBOX

    def outbox_for(self, plan_hash: str) -> Path:
        """The outbox folder of one study plan."""
        return self.outbox_dir / plan_hash[:PLAN_PREFIX]

    @property
    def flower_home(self) -> Path:
        """``FLWR_HOME`` of the site's Flower processes."""
        return self.root / FLOWER_HOME


@dataclass(frozen=True)
class RunDir:
    """The files of one coordinator run (``coordinator/runs/<id>/``)."""

    root: Path

    @property
    def progress_path(self) -> Path:
        """Progress events, one JSON line each."""
        return self.root / RUN_PROGRESS

    @property
    def result_path(self) -> Path:
        """The run result, written once at the end."""
        return self.root / RUN_RESULT

    @property
    def submission_path(self) -> Path:
        """What was submitted (study, plan hash, time), written by ``tessera study submit``."""
        return self.root / RUN_SUBMISSION


@dataclass(frozen=True)
class CoordinatorDir:
    """The paths inside the coordinator's folder (never a CKKS secret key)."""

    root: Path

    @property
    def kit_dir(self) -> Path:
        """The coordinator kit (CA, SuperLink certificate, node keys, manifest)."""
        return self.root / KIT

    @property
    def he_dir(self) -> Path:
        """Evaluation (add-only) CKKS contexts, per plan."""
        return self.root / HE

    @property
    def studies_dir(self) -> Path:
        """Study plans the coordinator runs."""
        return self.root / STUDIES

    def plan_path(self, plan_hash: str) -> Path:
        """The plan file of one study, named by its plan hash."""
        return self.studies_dir / f"{plan_hash[:PLAN_PREFIX]}.toml"

    @property
    def runs_dir(self) -> Path:
        """One folder per study run."""
        return self.root / RUNS

    def run(self, run_id: str) -> RunDir:
        """The folder of run ``run_id``."""
        return RunDir(self.runs_dir / run_id)

    @property
    def db_path(self) -> Path:
        """The coordinator store (model registry)."""
        return self.root / COORDINATOR_DB

    @property
    def db_url(self) -> str:
        """SQLAlchemy URL of the coordinator store."""
        return sqlite_url(self.db_path)

    @property
    def models_dir(self) -> Path:
        """Registered model files."""
        return self.root / MODELS

    @staticmethod
    def model_file(study: str, version: int) -> str:
        """Where a registered model lives, relative to the coordinator folder."""
        return f"{MODELS}/{study}-v{version}.json"

    @property
    def cards_dir(self) -> Path:
        """Rendered model cards."""
        return self.root / CARDS

    def card_dir(self, study: str, version: int) -> Path:
        """The rendered card of one registered model."""
        return self.cards_dir / f"{study}-v{version}"

    @property
    def superlink_db(self) -> Path:
        """The SuperLink's own database."""
        return self.root / SUPERLINK_DB

    @property
    def audit_dir(self) -> Path:
        """The coordinator's audit trail."""
        return self.root / AUDIT

    @property
    def audit_log(self) -> Path:
        """The coordinator's hash-chained audit log."""
        return self.audit_dir / COORDINATOR_LOG

    @property
    def app_dir(self) -> Path:
        """The Flower app bundle the coordinator submits."""
        return self.root / APP

    @property
    def run_config_path(self) -> Path:
        """The run config handed to ``flwr run``."""
        return self.root / RUN_CONFIG

    @property
    def flower_home(self) -> Path:
        """``FLWR_HOME`` of the coordinator's Flower processes."""
        return self.root / FLOWER_HOME

    @property
    def process_dir(self) -> Path:
        """The running coordinator's pid and state files (``tessera coordinator start``)."""
        return self.root / RUN

    @property
    def logs_dir(self) -> Path:
        """Logs of the coordinator's processes."""
        return self.root / LOGS


@dataclass(frozen=True)
class AuditorDir:
    """The paths inside the auditor's folder."""

    root: Path

    @property
    def kit_dir(self) -> Path:
        """The auditor kit (its key pair, the CA, the manifest)."""
        return self.root / KIT

    @property
    def pulled_dir(self) -> Path:
        """Copies of the parties' audit logs, as pulled."""
        return self.root / PULLED

    def pulled_log(self, party: str) -> Path:
        """The pulled copy of one party's audit log."""
        return self.pulled_dir / f"{party}.log"


@dataclass(frozen=True)
class WorkDir:
    """The paths of one work folder: manifest, coordinator, sites, auditor, report, logs."""

    root: Path

    @property
    def manifest_path(self) -> Path:
        """``federation.toml``, the signed federation manifest."""
        return self.root / MANIFEST

    @property
    def coordinator(self) -> CoordinatorDir:
        return CoordinatorDir(self.root / COORDINATOR)

    @property
    def sites_dir(self) -> Path:
        return self.root / SITES

    def site(self, name: str) -> SiteDir:
        """The folder of site ``name``."""
        return SiteDir(root=self.sites_dir / name, name=name)

    @staticmethod
    def site_folder(name: str) -> str:
        """The folder of site ``name`` relative to the work folder (as manifests list it)."""
        return f"{SITES}/{name}"

    @property
    def auditor(self) -> AuditorDir:
        return AuditorDir(self.root / AUDITOR)

    @property
    def report_path(self) -> Path:
        """``report.json``, the run report."""
        return self.root / REPORT

    @property
    def logs_dir(self) -> Path:
        """Logs of the processes the launcher started."""
        return self.root / LOGS
