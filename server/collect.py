"""The one routine for everything the coordinator gathers from sites: send, check, refuse,
accept, and the typed record of each site left out.

:func:`collect` turns one step's replies into accepted replies (and, for steps that produce
contributions, checked envelopes) plus :class:`Refusal` records: sites that did not answer or
refused (``refused``) and answers the coordinator rejected (``rejected``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from common.errors import ErrorCode, TesseraError
from protos.tessera.v1 import agent_pb2
from server.envelopes import Expectation, ReplayGuard, check_envelope
from server.tasks import Reply


@dataclass(frozen=True)
class Refusal:
    """Why one site is not part of a step."""

    site: str
    code: str
    reason: str

    def to_json(self) -> dict[str, str]:
        """Report form: ``{"site", "code", "reason"}``."""
        return {"site": self.site, "code": self.code, "reason": self.reason}

    @classmethod
    def of(cls, site: str, err: TesseraError) -> Refusal:
        """A refusal from an error."""
        return cls(site, err.code.value, err.message)


@dataclass
class Collected:
    """One step's outcome: accepted replies (with their contributions), and who is out."""

    accepted: list[tuple[str, agent_pb2.TaskReply]] = field(default_factory=list)
    envelopes: list[agent_pb2.UpdateEnvelope] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    rejected: list[Refusal] = field(default_factory=list)
    bytes_up: dict[str, int] = field(default_factory=dict)

    @property
    def sites(self) -> list[str]:
        """The accepted sites, in reply order."""
        return [site for site, _ in self.accepted]

    def refusals_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.refused]

    def rejections_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.rejected]


@dataclass(frozen=True)
class Contributions:
    """How a step's contributions are checked (None for steps that produce none)."""

    expect: Expectation
    guard: ReplayGuard
    signing_keys: dict[str, str]
    evaluation_context: bytes | None


def collect(replies: Sequence[Reply], names: dict[int, str], *,
            contributions: Contributions | None = None,
            expected_nodes: Sequence[int] = ()) -> Collected:
    """Check one step's replies; never raises for one site's fault."""
    out = Collected()
    answered: set[int] = set()
    for item in replies:
        site = names.get(item.node_id, f"node-{item.node_id}")
        answered.add(item.node_id)
        if item.reply is None:
            forged = item.failure.startswith("bad_signature")
            (out.rejected if forged else out.refused).append(Refusal(
                site, ErrorCode.BAD_SIGNATURE.value if forged else ErrorCode.NO_REPLY.value,
                item.failure))
            continue
        out.bytes_up[site] = item.size
        if not item.reply.ok:
            out.refused.append(Refusal(site, item.reply.error_code, item.reply.reason))
            continue
        if contributions is not None:
            try:
                check_envelope(item.reply.envelope, sender=site, expect=contributions.expect,
                               guard=contributions.guard,
                               signing_keys=contributions.signing_keys,
                               evaluation_context=contributions.evaluation_context)
            except TesseraError as err:
                out.rejected.append(Refusal.of(site, err))
                continue
            out.envelopes.append(item.reply.envelope)
        out.accepted.append((site, item.reply))
    for node in expected_nodes:
        if node not in answered:
            out.refused.append(Refusal(names.get(node, f"node-{node}"), ErrorCode.NO_REPLY.value,
                                       "no answer before the round timeout"))
    return out
