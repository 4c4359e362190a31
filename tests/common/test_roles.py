"""The access policy: parsing, validation and the allow/deny decision with its message."""

from __future__ import annotations

import pytest

from common.errors import ErrorCode, TesseraError
from common.roles import Policy, Role, normalise_command, parse_policy

POLICY = """
format = 1

[commands]
"site approve" = ["site_operator"]
"site budget" = ["site_operator", "auditor"]
"federation init" = ["coordinator"]
"demo" = ["coordinator", "site_operator", "auditor"]
"gui datasets.register" = ["site_operator"]

[without_kit]
"federation init" = "coordinator"
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def _refused(text: str) -> str:
    with pytest.raises(TesseraError) as info:
        parse_policy(text)
    assert info.value.code is ErrorCode.CONFIG_INVALID
    return info.value.message


def test_policy_grants_each_command_to_its_roles_only(policy: Policy) -> None:
    assert policy.allowed("site approve", Role.SITE_OPERATOR)
    assert not policy.allowed("site approve", Role.AUDITOR)
    assert not policy.allowed("site approve", Role.COORDINATOR)
    assert policy.allowed("site budget", Role.AUDITOR)
    assert policy.allowed("gui datasets.register", Role.SITE_OPERATOR)
    assert policy.roles_for("site budget") == {Role.SITE_OPERATOR, Role.AUDITOR}


def test_unknown_command_is_denied_for_every_role(policy: Policy) -> None:
    for role in Role:
        assert not policy.allowed("site frobnicate", role)
        with pytest.raises(TesseraError) as info:
            policy.check("site frobnicate", role)
        assert info.value.code is ErrorCode.PERMISSION_DENIED
        assert info.value.exit_code == 10
        assert info.value.message == "'site frobnicate' is not in the access policy: denied"


def test_denial_names_the_role_the_command_and_who_may(policy: Policy) -> None:
    with pytest.raises(TesseraError) as info:
        policy.check("site approve", Role.AUDITOR)
    assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert info.value.message == ("role 'auditor' may not run 'site approve' "
                                  "(policy grants it to: site_operator)")
    with pytest.raises(TesseraError) as info:
        policy.check("site budget", Role.COORDINATOR)
    assert "(policy grants it to: site_operator, auditor)" in info.value.message


def test_allowed_check_passes_and_whitespace_does_not_matter(policy: Policy) -> None:
    policy.check("  site   approve ", Role.SITE_OPERATOR)
    assert normalise_command(" site \t budget ") == "site budget"


def test_commands_granted_to_all_and_without_kit(policy: Policy) -> None:
    assert policy.granted_to_everyone("demo")
    assert not policy.granted_to_everyone("site budget")
    assert not policy.granted_to_everyone("nope")
    assert policy.role_without_kit("federation init") is Role.COORDINATOR
    assert policy.role_without_kit("site approve") is None


def test_policy_is_read_only(policy: Policy) -> None:
    with pytest.raises(TypeError):
        policy.grants["site approve"] = frozenset(Role)  # type: ignore[index]


def test_unknown_role_is_refused_naming_the_entry() -> None:
    message = _refused(POLICY.replace('"site approve" = ["site_operator"]',
                                      '"site approve" = ["operator"]'))
    assert "'site approve'" in message and "'operator'" in message
    assert "coordinator, site_operator, auditor" in message


def test_unknown_role_in_without_kit_is_refused_naming_the_entry() -> None:
    message = _refused(POLICY.replace('"federation init" = "coordinator"',
                                      '"federation init" = "admin"'))
    assert "[without_kit]" in message and "'federation init'" in message and "'admin'" in message


def test_without_kit_role_must_be_granted_the_command() -> None:
    message = _refused(POLICY.replace('"federation init" = "coordinator"',
                                      '"federation init" = "auditor"'))
    assert "'federation init'" in message and "does not grant" in message


@pytest.mark.parametrize(("text", "expected"), [
    ("format = 1\n[commands]\n'site approve' = []\n", "'site approve'"),
    ("format = 1\n[commands]\n'site approve' = 'site_operator'\n", "non-empty list"),
    ("format = 1\n[commands]\n'Site Approve' = ['site_operator']\n", "'Site Approve'"),
    ("format = 1\n[commands]\n'site  approve' = ['site_operator']\n", "command path"),
    ("format = 1\n[comands]\n'site approve' = ['site_operator']\n", "'comands'"),
    ("[commands]\n'site approve' = ['site_operator']\n", "format must be 1"),
    ("format = 1\n", "[commands] is missing"),
    ("format = 1\n[commands\n", "not valid TOML"),
])
def test_malformed_policy_is_refused_saying_what_is_wrong(text: str, expected: str) -> None:
    message = _refused(text)
    assert message.startswith("access policy: ")
    assert expected in message
