"""The three roles and the access policy: which role may run which command.

A *command path* names one action: the words typed after ``tessera`` on the command line
(``"site approve"``, ``"federation init"``) or ``"gui <page>.<action>"`` in the desktop app
(``"gui datasets.register"``). The :class:`Policy` maps each path to the roles allowed;
a path the policy does not name is denied to everyone (fail closed), so a new command is
usable only once the policy grants it.

The policy is data (TOML, see ``tessera/roles.toml``)::

    format = 1

    [commands]
    "site approve" = ["site_operator"]
    "site budget" = ["site_operator", "auditor"]

    [without_kit]            # optional: commands that create an identity
    "federation init" = "coordinator"

``[without_kit]`` names commands that run before any kit exists (provisioning a federation
creates the coordinator's kit); run without a kit, the caller acts in the role given there.

Pure: parsing and checking only; who the caller is (their kit) is the edges' business.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from common.errors import ErrorCode, TesseraError

POLICY_FORMAT = 1
_COMMAND = re.compile(r"^[a-z][a-z0-9_-]*( [a-z][a-z0-9_.-]*)*$")
_TABLES = frozenset({"format", "commands", "without_kit"})


class Role(StrEnum):
    """Who a caller is, from the kit they run with."""

    COORDINATOR = "coordinator"
    SITE_OPERATOR = "site_operator"
    AUDITOR = "auditor"


_ROLE_NAMES = ", ".join(r.value for r in Role)

#: The role a kit of each kind (``kit.toml``'s ``role``) acts in.
KIT_ROLES: Mapping[str, Role] = MappingProxyType({
    "coordinator": Role.COORDINATOR,
    "site": Role.SITE_OPERATOR,
    "auditor": Role.AUDITOR,
})


def kit_role(kind: str) -> Role:
    """The policy role of a kit of kind ``kind``; CONFIG_INVALID for an unknown kind."""
    role = KIT_ROLES.get(kind)
    if role is None:
        raise TesseraError(ErrorCode.CONFIG_INVALID,
                           f"kit role {kind!r} is not one of {', '.join(KIT_ROLES)}")
    return role


def normalise_command(command: str) -> str:
    """``command`` with runs of whitespace collapsed (``" site  budget "`` → ``"site budget"``)."""
    return " ".join(command.split())


@dataclass(frozen=True)
class Policy:
    """Command path → roles allowed; anything not listed is denied to everyone."""

    grants: Mapping[str, frozenset[Role]]
    without_kit: Mapping[str, Role] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grants", MappingProxyType(dict(self.grants)))
        object.__setattr__(self, "without_kit", MappingProxyType(dict(self.without_kit)))

    def roles_for(self, command: str) -> frozenset[Role]:
        """The roles allowed to run ``command`` (empty if the policy does not name it)."""
        return self.grants.get(normalise_command(command), frozenset())

    def knows(self, command: str) -> bool:
        """Whether the policy names ``command`` at all."""
        return normalise_command(command) in self.grants

    def allowed(self, command: str, role: Role) -> bool:
        """Whether ``role`` may run ``command``; an unknown command is denied to everyone."""
        return role in self.roles_for(command)

    def granted_to_everyone(self, command: str) -> bool:
        """Whether every role may run ``command`` (such commands need no identity)."""
        return self.roles_for(command) == frozenset(Role)

    def role_without_kit(self, command: str) -> Role | None:
        """The role a caller without a kit takes for ``command``, if the policy names one."""
        return self.without_kit.get(normalise_command(command))

    def require_known(self, command: str) -> None:
        """Raise PERMISSION_DENIED unless the policy names ``command``."""
        path = normalise_command(command)
        if path not in self.grants:
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"'{path}' is not in the access policy: denied")

    def check(self, command: str, role: Role) -> None:
        """Raise PERMISSION_DENIED, saying who may, unless ``role`` may run ``command``."""
        self.require_known(command)
        path = normalise_command(command)
        granted = self.grants[path]
        if role not in granted:
            allowed = ", ".join(r.value for r in Role if r in granted)
            raise TesseraError(ErrorCode.PERMISSION_DENIED,
                               f"role '{role.value}' may not run '{path}' "
                               f"(policy grants it to: {allowed})")


def parse_policy(text: str) -> Policy:
    """Parse and validate a policy (CONFIG_INVALID naming the table or entry at fault)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _invalid(f"not valid TOML ({exc})") from None
    unknown = sorted(set(data) - _TABLES)
    if unknown:
        raise _invalid(f"unknown key {unknown[0]!r} (expected: format, [commands], "
                       f"[without_kit])")
    if data.get("format") != POLICY_FORMAT:
        raise _invalid(f"format must be {POLICY_FORMAT} (got {data.get('format')!r})")
    commands = data.get("commands")
    if not isinstance(commands, dict) or not commands:
        raise _invalid("[commands] is missing or empty")
    grants = {_command(path, "[commands]"): _roles(path, value)
              for path, value in commands.items()}
    without_kit: dict[str, Role] = {}
    table = data.get("without_kit", {})
    if not isinstance(table, dict):
        raise _invalid("[without_kit] must be a table of command = role")
    for path, value in table.items():
        command = _command(path, "[without_kit]")
        if not isinstance(value, str):
            raise _invalid(f"[without_kit] entry {path!r} must be one role name")
        role = _role(path, value, "[without_kit]")
        if role not in grants.get(command, frozenset()):
            raise _invalid(f"[without_kit] entry {path!r} names role '{role.value}', "
                           f"which [commands] does not grant it")
        without_kit[command] = role
    return Policy(grants=grants, without_kit=without_kit)


def _command(path: object, where: str) -> str:
    if not isinstance(path, str) or not _COMMAND.fullmatch(path):
        raise _invalid(f"{where} entry {path!r} is not a command path "
                       f"(lower-case words separated by single spaces, e.g. 'site approve')")
    return path


def _roles(path: str, value: object) -> frozenset[Role]:
    if not isinstance(value, list) or not value:
        raise _invalid(f"[commands] entry {path!r} must be a non-empty list of roles "
                       f"(drop the entry to deny it to everyone)")
    return frozenset(_role(path, item, "[commands]") for item in value)


def _role(path: str, name: object, where: str) -> Role:
    if isinstance(name, str) and name in {r.value for r in Role}:
        return Role(name)
    raise _invalid(f"{where} entry {path!r} names unknown role {name!r} "
                   f"(roles: {_ROLE_NAMES})")


def _invalid(message: str) -> TesseraError:
    return TesseraError(ErrorCode.CONFIG_INVALID, f"access policy: {message}")
