"""The site's systemd units: the one home's command lines, quoted so systemd reads them back."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from client_app.node.commands import agent_command, supernode_command
from client_app.node.services import (
    CREDENTIAL_NAME,
    ServiceLayout,
    render_units,
    systemd_word,
    write_units,
)
from common.errors import ErrorCode, TesseraError
from common.workdir import SiteDir

SITE = SiteDir(root=Path("/srv/tessera/site a"), name="site-a")


def _layout(**changes: object) -> ServiceLayout:
    values: dict[str, object] = {
        "site": SITE, "superlink": "link.example.org:9092",
        "node_home": Path("/var/lib/tessera-node/site-a"),
        "credential": Path("/etc/tessera/site-a/site-passphrase.cred"), **changes}
    return ServiceLayout(**values)  # type: ignore[arg-type]


def _read_back(line: str) -> list[str]:
    """A command line as systemd reads it (``%%`` and ``$$`` resolved, quotes removed)."""
    return shlex.split(line.replace("%%", "%").replace("$$", "$"))


def _setting(text: str, key: str) -> str:
    (value,) = [line.partition("=")[2] for line in text.splitlines()
                if line.startswith(f"{key}=")]
    return value


@pytest.mark.parametrize("word", ["plain", "with space", "100%", "$HOME", 'say "hi"',
                                  "back\\slash", "agent-address='unix:/a b/agent.sock'", ""])
def test_systemd_words_read_back_verbatim(word: str) -> None:
    assert _read_back(systemd_word(word)) == [word]


def test_the_supernode_runs_the_one_home_s_command_with_its_own_kit_copies() -> None:
    layout = _layout()
    units = render_units(layout)
    text = units["tessera-supernode-site-a.service"]
    expected = supernode_command(SITE, "link.example.org:9092", insecure=False, port=9094,
                                 kit_files=(layout.node_ca, layout.node_key))
    assert _read_back(_setting(text, "ExecStart")) == expected
    assert _setting(text, "User") == "tessera-node"
    assert _setting(text, "Requires") == "tessera-agent-site-a.service"
    assert f"Environment=FLWR_HOME={layout.node_home}/flwr-home" in text
    assert str(SITE.root / "kit") not in text  # the node account cannot read the site's kit


def test_the_agent_reads_the_passphrase_from_its_credential_on_descriptor_3() -> None:
    text = render_units(_layout())["tessera-agent-site-a.service"]
    shell, flag, script = _read_back(_setting(text, "ExecStart"))
    assert (shell, flag) == ("/bin/sh", "-c")
    words = shlex.split(script)
    assert words[0] == "exec"
    assert words[1:-3] == agent_command(SITE, socket_group="tessera-node")
    assert words[-3:] == ["--passphrase-fd", "3", f"3<%d/{CREDENTIAL_NAME}"]
    assert "LoadCredentialEncrypted=site-passphrase:/etc/tessera/site-a/" in text
    assert (_setting(text, "User"), _setting(text, "SupplementaryGroups")) == \
        ("tessera-site", "tessera-node")
    assert "Environment=" not in text  # nothing secret, nothing at all, in its environment


def test_a_plain_credential_file_is_loaded_as_is() -> None:
    text = render_units(_layout(credential=Path("/etc/tessera/site-a/passphrase")))[
        "tessera-agent-site-a.service"]
    assert "LoadCredential=site-passphrase:/etc/tessera/site-a/passphrase" in text


def test_units_run_the_commands_of_the_given_environment() -> None:
    units = render_units(_layout(bin_dir=Path("/opt/tessera/venv/bin")))
    joined = "\n".join(units.values())
    assert "/opt/tessera/venv/bin/python -m client_app.node.agent_process" in joined
    assert "ExecStart=/opt/tessera/venv/bin/flower-supernode " in joined
    assert str(Path(sys.executable).parent) not in joined


@pytest.mark.parametrize(("change", "named"), [
    ({"site_user": "Root!"}, "site user"),
    ({"node_user": "tessera-site"}, "two accounts"),
    ({"superlink": "no-port"}, "superlink"),
    ({"supernode_port": 70000}, "supernode port"),
    ({"node_home": Path("relative")}, "node home"),
    ({"credential": Path("cred")}, "credential"),
])
def test_a_bad_layout_is_refused_naming_the_setting(change: dict[str, object],
                                                    named: str) -> None:
    with pytest.raises(TesseraError) as caught:
        _layout(**change)
    assert caught.value.code is ErrorCode.CONFIG_INVALID
    assert named in caught.value.message


def test_units_are_written_readable_and_replaced(tmp_path: Path) -> None:
    first = write_units(_layout(), tmp_path)
    assert sorted(p.name for p in first) == ["tessera-agent-site-a.service",
                                             "tessera-supernode-site-a.service"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in first)
    write_units(_layout(supernode_port=9200), tmp_path)
    assert "--port 9200" in (tmp_path / "tessera-supernode-site-a.service").read_text()


def test_a_unit_path_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tessera-agent-site-a.service").mkdir()
    with pytest.raises(TesseraError) as caught:
        write_units(_layout(), tmp_path)
    assert "is a directory" in caught.value.message


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    paths = write_units(_layout(site=SiteDir(root=tmp_path / "site", name="site-a")),
                        tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, paths)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
