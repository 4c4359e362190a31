"""The coordinator's launch steps, one home for ``tessera coordinator`` and ``tessera demo``.

A coordinator folder (:class:`common.workdir.CoordinatorDir`) holds its kit (``kit/``: the
signed manifest, the coordinator's signing key, the CA, the SuperLink certificate and key).
From it this module builds the ``flower-superlink`` command line (TLS and SuperNode
authentication on unless ``tls`` is off), writes the Flower CLI's connection
(``flwr-home/config.toml``), registers every node-authentication key of the signed manifest
with the SuperLink, writes the app bundle and run config a study is submitted with, and
reads a ``flwr run`` answer. Nothing here keeps state: the callers own their processes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import tomli_w

from client_app.node.commands import venv_binary
from common.errors import ErrorCode, TesseraError
from common.processes import ProcessGroup
from common.workdir import CoordinatorDir
from privacy.manifest import (
    CA_CERT_FILE,
    KIT_FILE,
    MANIFEST_FILE,
    SIGNING_KEY_FILE,
    Manifest,
    load_manifest,
)
from privacy.signing import SigningKey

#: The name of the Flower CLI connection to the coordinator's own SuperLink.
CONNECTION = "tessera"
SUPERLINK_CERT_FILE = "superlink.pem"
SUPERLINK_KEY_FILE = "superlink.key"
_STARTED_RUN = re.compile(r"Successfully started run (\d+)")
_ALREADY_REGISTERED = "already in use"


def coordinator_manifest(coordinator: CoordinatorDir) -> Manifest:
    """The signed manifest of the coordinator's kit, after checking that the kit holds the
    coordinator's signing key (PERMISSION_DENIED otherwise: sites accept only signed tasks,
    so no coordinator runs without it)."""
    kit = coordinator.kit_dir
    missing = [name for name in (MANIFEST_FILE, SIGNING_KEY_FILE, CA_CERT_FILE,
                                 SUPERLINK_CERT_FILE, SUPERLINK_KEY_FILE)
               if not (kit / name).is_file()]
    if missing:
        raise TesseraError(
            ErrorCode.PERMISSION_DENIED,
            f"--coordinator-dir: {kit} is not a coordinator kit (missing {', '.join(missing)}); "
            "install one with 'tessera coordinator start --kit COORDINATOR_KIT' "
            "(the coordinator-kit folder 'tessera federation init' wrote)")
    manifest = load_manifest(kit / MANIFEST_FILE)
    key = SigningKey(bytes.fromhex((kit / SIGNING_KEY_FILE).read_text(encoding="ascii").strip()))
    if key.public_hex != manifest.coordinator_signing_key:
        raise TesseraError(ErrorCode.PERMISSION_DENIED,
                           "--coordinator-dir: the kit's signing key is not the coordinator key "
                           "of its signed manifest")
    return manifest


def install_kit(coordinator: CoordinatorDir, kit: Path) -> None:
    """Copy the coordinator kit ``kit`` into the coordinator folder (once; a different kit
    already installed there is refused rather than replaced)."""
    source = Path(kit).expanduser().absolute()
    if not (source / KIT_FILE).is_file() or not (source / MANIFEST_FILE).is_file():
        raise TesseraError(ErrorCode.NOT_FOUND,
                           f"--kit: {source} holds no kit ({KIT_FILE}, {MANIFEST_FILE})")
    target = coordinator.kit_dir
    if target.exists():
        if (target / MANIFEST_FILE).read_bytes() != (source / MANIFEST_FILE).read_bytes():
            raise TesseraError(ErrorCode.CONFIG_INVALID,
                               f"--kit: {target} already holds the kit of another federation")
        return
    coordinator.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.copytree(source, target)
    target.chmod(0o700)


def superlink_command(coordinator: CoordinatorDir, *, host: str, port: int,
                      tls: bool = True) -> list[str]:
    """``flower-superlink`` for the coordinator folder: its own database, no dependency
    installation at run time, TLS and SuperNode authentication from the kit unless ``tls``
    is off (development only)."""
    args = [venv_binary("flower-superlink"), "--host", host, "--port", str(port),
            "--database", str(coordinator.superlink_db.absolute()),
            "--disable-runtime-dependency-installation"]
    if not tls:
        return [*args, "--insecure"]
    kit = coordinator.kit_dir.absolute()
    return [*args, "--ssl-ca-certfile", str(kit / CA_CERT_FILE),
            "--ssl-certfile", str(kit / SUPERLINK_CERT_FILE),
            "--ssl-keyfile", str(kit / SUPERLINK_KEY_FILE), "--enable-supernode-auth"]


def write_flwr_config(home: Path, address: str, *, ca: Path | None) -> Path:
    """The Flower CLI's connection ``tessera`` to ``address`` (``ca`` None: insecure)."""
    transport = "insecure = true" if ca is None else \
        f'root-certificates = "{Path(ca).absolute()}"'
    text = (f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{address}"\n{transport}\n')
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def register_nodes(procs: ProcessGroup, coordinator: CoordinatorDir,
                   manifest: Manifest) -> list[str]:
    """Register every site's node-authentication key of the signed manifest with the
    SuperLink (a key registered before, as after a restart, counts as registered); returns
    the site names."""
    keys_dir = coordinator.process_dir / "node-keys"
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for site in manifest.sites:
        key = keys_dir / f"{site.name}.pub"
        key.write_text(f"{site.node_auth_public_key} tessera-{site.name}\n", encoding="utf-8")
        child = procs.start(f"register-{site.name}", [
            venv_binary("flwr"), "supernode", "register", str(key), CONNECTION], oneshot=True)
        status = child.popen.wait(timeout=120)
        if status != 0 and _ALREADY_REGISTERED not in child.tail(40):
            raise TesseraError(ErrorCode.PROCESS_FAILED,
                               f"registering the node key of {site.name} failed; "
                               f"see {child.log_path}")
    return [site.name for site in manifest.sites]


def app_folder(coordinator_dir: Path, run_config: Mapping[str, object]) -> tuple[Path, Path]:
    """The Flower app bundle the coordinator submits, and its run-config file.

    The bundle holds only its pyproject: the ServerApp and the ClientApp shim are installed
    with Tessera, so no code travels and no dependency is installed at run time.
    """
    layout = CoordinatorDir(coordinator_dir)
    folder = layout.app_dir
    folder.mkdir(parents=True, exist_ok=True)
    project = {
        "project": {"name": "tessera-study", "version": "1.0.0",
                    "description": "Tessera study run", "license": "Apache-2.0",
                    "dependencies": []},
        "tool": {"flwr": {"app": {
            "publisher": "tessera",
            "components": {"serverapp": "server.server_app:app",
                           "clientapp": "client_app.shim:app"},
            "config": {key: _default(value) for key, value in RUN_CONFIG_KEYS.items()},
        }}},
    }
    unknown = sorted(set(run_config) - set(RUN_CONFIG_KEYS))
    if unknown:
        raise TesseraError(ErrorCode.INTERNAL, f"run config: unknown keys {unknown}")
    (folder / "pyproject.toml").write_text(tomli_w.dumps(project), encoding="utf-8")
    run_toml = layout.run_config_path
    run_toml.write_text(tomli_w.dumps(dict(run_config)), encoding="utf-8")
    return folder, run_toml


#: Every key the ServerApp reads from its run config, with an example of its type.
RUN_CONFIG_KEYS: dict[str, object] = {
    "coordinator-dir": "", "workdir": "", "plan": "", "expected-sites": 0, "custodian": "",
    "round-timeout": 0.0, "loso": False, "resume-run": "", "task": "",
}


def _default(value: object) -> object:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0
    if isinstance(value, float):
        return 0.0
    return ""


def started_run_id(output: str) -> str:
    """The run id in what ``flwr run`` printed (PROCESS_FAILED if it started none)."""
    found = _STARTED_RUN.search(output)
    if found is None:
        tail = "\n".join(output.strip().splitlines()[-5:])
        raise TesseraError(ErrorCode.PROCESS_FAILED, f"the SuperLink started no run: {tail}")
    return found.group(1)
