"""``tessera audit ...``: the auditor's tools over a party's audit log.

``verify`` needs no secret key: it pins the party's signing key from the signed federation
manifest in your kit (``tessera --kit DIR`` or ``TESSERA_KIT``), checks the hash chain, the
Merkle checkpoints and their signatures, and names the first bad record and the kind of fault;
with an auditor kit each run is appended to the auditor's own audit log. ``show`` and
``export`` decrypt payloads with the auditor's X25519 key (the auditor kit's ``sealing.key``).
``serve`` runs the read-only audit service over a party's logs (coordinator or site kit);
``pull`` fetches a log from one over mutual TLS with the auditor kit and verifies the copy.
Errors go through the one CLI boundary (:func:`common.cli_boundary.cli_boundary`).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from common.cli_boundary import cli_boundary
from common.cli_options import JsonOption, KitOption, input_file, kit_from, print_json
from common.errors import ErrorCode, TesseraError, exit_status
from privacy.at_rest import atomic_write_bytes
from privacy.audit_format import Fault
from privacy.audit_log import (
    AuditEntry,
    AuditLog,
    export_checkpoint,
    load_checkpoint,
    read_records,
)
from privacy.audit_verify import VerifyReport, verify_bytes, verify_log
from privacy.kit_identity import verify_kit
from privacy.manifest import SEALING_KEY_FILE, SIGNING_KEY_FILE, Manifest, describe_party
from privacy.sealing import SealingKey
from privacy.signing import SigningKey

app = typer.Typer(name="audit", help="Verify and read tamper-evident audit logs.",
                  no_args_is_help=True, add_completion=False)
console = Console()
LogArg = Annotated[Path, typer.Argument(help="The audit log file.")]
CheckpointOption = Annotated[Path | None, typer.Option(
    "--checkpoint", help="A trusted checkpoint file ('tessera audit checkpoint').")]
KeyOption = Annotated[Path, typer.Option("--key", help="The auditor's sealing key file.")]
AUDITOR_LOG = Path("audit") / "auditor.log"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _report_json(report: VerifyReport, name: str) -> dict[str, Any]:
    """``audit verify --json`` and ``audit pull --json``: the verification, one shape."""
    return {"log": name, "ok": report.ok, "fully_verified": report.fully_verified,
            "party": report.party, "role": report.role, "records": report.records,
            "checkpointed": report.checkpointed, "pinned": report.pinned,
            "fault": report.fault.value if report.fault else None,
            "first_bad_index": report.first_bad_index,
            "message": None if report.ok else _failure(report, name)}


def needed_kit(kit: Path | None, command: str) -> Path:
    """``kit``, or KEY_MISSING saying why ``audit COMMAND`` needs one."""
    if kit is None:
        raise TesseraError(ErrorCode.KEY_MISSING,
                           f"'audit {command}' needs your kit (--kit DIR, tessera --kit DIR, "
                           "or TESSERA_KIT): the signed federation manifest in it gives each "
                           "party's signing key, which the log must be signed with")
    return kit


def pinning_manifest(kit: Path | None, command: str) -> Manifest:
    """The signed manifest of the caller's kit, which gives every party's signing key."""
    return verify_kit(needed_kit(kit, command)).manifest


def _auditor_key(path: Path) -> SealingKey:
    try:
        return SealingKey(bytes.fromhex(path.read_text(encoding="ascii").strip()))
    except (OSError, ValueError):
        raise TesseraError(ErrorCode.KEY_MISSING, "--key: not a readable auditor key") from None


def _entries(log: Path, key: Path, checkpoint: Path | None, *, manifest: Manifest,
             event: str | None, study: str | None, since: str | None) -> list[AuditEntry]:
    trusted = load_checkpoint(checkpoint) if checkpoint else None
    entries = read_records(log, auditor_key=_auditor_key(key), trusted_checkpoint=trusted,
                           manifest=manifest)
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--since: not an ISO date/time") \
                from None
        entries = [e for e in entries
                   if datetime.fromisoformat(e.header["time"].replace("Z", "+00:00"))
                   >= (start if start.tzinfo else start.astimezone())]
    if event:
        entries = [e for e in entries if e.header["event"] == event]
    if study:
        entries = [e for e in entries if (e.header.get("plan_hash") or "").startswith(study)]
    return entries


def _row(entry: AuditEntry) -> dict[str, Any]:
    h = entry.header
    return {"index": entry.index, "time": h["time"], "actor": h["actor"], "role": h["role"],
            "event": h["event"], "plan_hash": h.get("plan_hash"),
            "checkpointed": entry.checkpointed, "details": entry.details}


def neutralise(cell: str) -> str:
    """Make a cell safe to open in a spreadsheet (no formula injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def record_verification(kit: Path | None, log: Path, report: VerifyReport, *,
                        trusted: bool) -> None:
    """Append a ``log_verified`` record to the auditor's own audit log (auditor kits only).

    The log is ``<kit>/audit/auditor.log``: party and role ``auditor``, signed with the
    auditor's signing key, payloads sealed to the auditor's own sealing key; a checkpoint
    follows every record (docs/audit-format.md, section 7).
    """
    if kit is None or not (kit / SIGNING_KEY_FILE).exists() or \
            not (kit / SEALING_KEY_FILE).exists():
        return
    if verify_kit(kit).role != "auditor":
        return
    signer = SigningKey(bytes.fromhex((kit / SIGNING_KEY_FILE).read_text().strip()))
    path = kit / AUDITOR_LOG
    if path.exists():
        trail = AuditLog.open(path, signing_key=signer)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        own = SealingKey(bytes.fromhex((kit / SEALING_KEY_FILE).read_text().strip()))
        trail = AuditLog.create(path, party="auditor", role="auditor", signing_key=signer,
                                auditor_public_hex=own.public_hex)
    trail.append("log_verified", actor="auditor", details={
        "log": log.name, "log_id": report.log_id, "party": report.party, "role": report.role,
        "records": report.records, "ok": report.ok,
        "fault": report.fault.value if report.fault else None,
        "first_bad_index": report.first_bad_index, "pinned": report.pinned,
        "trusted_checkpoint": trusted, "tail_verified": report.tail_verified})
    trail.checkpoint()


def _failure(report: VerifyReport, name: str) -> str:
    """What is wrong with a log that does not verify, in one line."""
    if report.fault is Fault.NOT_A_LOG:
        return f"{name} is not a Tessera audit log ({report.message})"
    fault = report.fault.value if report.fault else "fault"
    if report.first_bad_index == -1:
        return f"{fault}: {report.message}"
    return f"{fault} at record {report.first_bad_index}: {report.message}"


def _whose(report: VerifyReport) -> str:
    return describe_party(report.role or "?", report.party or "?")


@app.command("verify")
def verify(ctx: typer.Context, log: LogArg, checkpoint: CheckpointOption = None,
           kit: KitOption = None, as_json: JsonOption = False) -> None:
    """Check a log's integrity; exit non-zero naming the first bad record and the fault."""
    with cli_boundary():
        own_kit = kit_from(ctx, kit)
        manifest = pinning_manifest(own_kit, "verify")
        trusted = load_checkpoint(input_file(checkpoint, "--checkpoint")) if checkpoint \
            else None
        report = verify_log(input_file(log, "LOG"), trusted_checkpoint=trusted,
                            manifest=manifest)
        record_verification(own_kit, log, report, trusted=trusted is not None)
    if as_json:
        print_json(_report_json(report, log.name))
        if not report.ok:
            raise typer.Exit(exit_status(ErrorCode.DATA_INVALID))
        return
    if not report.ok:
        typer.echo(f"FAILED: {_failure(report, log.name)}", err=True)
        raise typer.Exit(exit_status(ErrorCode.DATA_INVALID))
    who = _whose(report)
    if report.fully_verified:
        typer.echo(f"OK: {report.records} records of {who}, signed with the key the manifest "
                   "gives it; chain, signed checkpoints and the trusted checkpoint (covering "
                   "every record) verify")
        return
    typer.echo(f"INTACT, TAIL UNVERIFIED: {report.records} records of {who}, signed with the "
               f"key the manifest gives it; the chain, the signed checkpoints "
               f"({report.checkpointed} records under one) "
               f"{'and the trusted checkpoint ' if trusted else ''}verify")
    if trusted is not None:
        typer.echo(f"tail unverified: records {trusted['tree_size']}..{report.records - 1} "
                   "are not covered by the trusted checkpoint")
    typer.echo("only a trusted checkpoint covering every record rules out records cut from or "
               "appended to the end: store one with 'tessera audit checkpoint', keep it away "
               "from the party, and pass it with --checkpoint")


@app.command("show")
def show(ctx: typer.Context, log: LogArg, key: KeyOption,
         as_json: JsonOption = False,
         event: Annotated[str | None, typer.Option(
             "--event", help="Only records of this event type (e.g. study_approved).")] = None,
         study: Annotated[str | None, typer.Option(
             "--study", help="Only records of plans whose hash starts with this.")] = None,
         since: Annotated[str | None, typer.Option(
             "--since", help="Only records at or after this ISO date/time.")] = None,
         checkpoint: CheckpointOption = None, kit: KitOption = None) -> None:
    """Decrypt and list records (filters: event type, study hash prefix, time)."""
    with cli_boundary():
        entries = _entries(input_file(log, "LOG"), key, checkpoint,
                           manifest=pinning_manifest(kit_from(ctx, kit), "show"),
                           event=event, study=study, since=since)
    if as_json:
        print_json([_row(e) for e in entries])
        return
    table = Table("index", "time", "actor", "event", "study", "details")
    for e in entries:
        r = _row(e)
        table.add_row(*(Text(str(v)) for v in (
            r["index"], r["time"], r["actor"], r["event"], (r["plan_hash"] or "")[:12],
            json.dumps(r["details"], sort_keys=True)[:80])))
    console.print(table)


@app.command("export")
def export(ctx: typer.Context, log: LogArg, key: KeyOption,
           out: Annotated[Path, typer.Option("--out", help="Output file.")],
           fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
           kit: KitOption = None, as_json: JsonOption = False) -> None:
    """Write decrypted records as JSON lines or CSV (spreadsheet formulas neutralised)."""
    with cli_boundary("--out"):
        if fmt not in ("jsonl", "csv"):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--format: jsonl or csv")
        manifest = pinning_manifest(kit_from(ctx, kit), "export")
        rows = [_row(e) for e in _entries(input_file(log, "LOG"), key, None, manifest=manifest,
                                          event=None, study=None, since=None)]
        if fmt == "jsonl":
            data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            columns = ["index", "time", "actor", "role", "event", "plan_hash", "checkpointed",
                       "details"]
            writer.writerow(columns)
            for r in rows:
                cells = [r[c] if c != "details" else json.dumps(r[c], sort_keys=True)
                         for c in columns]
                writer.writerow([neutralise("" if v is None else str(v)) for v in cells])
            data = buffer.getvalue()
        atomic_write_bytes(out, data.encode("utf-8"))
    if as_json:
        print_json({"records": len(rows), "out": str(out), "format": fmt})
        return
    typer.echo(f"{len(rows)} records written to {out.name}")


@app.command("checkpoint")
def checkpoint(ctx: typer.Context, log: LogArg, out: Annotated[Path, typer.Option(
        "--out", help="Where to store the trusted checkpoint.")],
        kit: KitOption = None, as_json: JsonOption = False) -> None:
    """Verify a log and store its latest signed checkpoint, to detect truncation later."""
    with cli_boundary("--out"):
        report = verify_log(input_file(log, "LOG"),
                            manifest=pinning_manifest(kit_from(ctx, kit), "checkpoint"))
        if not report.ok:
            raise TesseraError(ErrorCode.DATA_INVALID,
                               f"log does not verify: {_failure(report, log.name)}")
        latest = None
        for raw in log.read_bytes().split(b"\n"):
            if raw.startswith(b"{") and b'"type":"checkpoint"' in raw:
                latest = json.loads(raw)
        if latest is None:
            raise TesseraError(ErrorCode.NOT_FOUND, "the log holds no signed checkpoint yet")
        export_checkpoint(out, latest)
    if as_json:
        print_json({"tree_size": latest["tree_size"], "out": str(out), "log": log.name})
        return
    typer.echo(f"checkpoint of {latest['tree_size']} records stored in {out.name}")


@app.command("serve")
def serve(logs: Annotated[list[str], typer.Option(
              "--log", help="NAME=PATH of a log to serve (repeatable).")],
          address: Annotated[str, typer.Option("--address", help="HOST:PORT to listen on.")],
          ctx: typer.Context,
          kit: Annotated[Path | None, typer.Option(
              "--kit", help="This party's kit (coordinator or site); default: "
              "'tessera --kit DIR' or TESSERA_KIT.")] = None) -> None:
    """Serve audit logs read-only to the federation's auditor (mutual TLS) until Ctrl-C."""
    from tessera.audit_service import serve_audit  # gRPC: imported here, --help stays light

    with cli_boundary("--log"):
        paths: dict[str, Path] = {}
        for item in logs:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"--log: {item!r} is not NAME=PATH")
            if name in paths:
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"--log: {name!r} given twice")
            paths[name] = Path(path).expanduser().absolute()
        party_kit = kit_from(ctx, kit)
        if party_kit is None:
            raise TesseraError(ErrorCode.KEY_MISSING, "'audit serve' needs this party's kit: "
                               "--kit DIR, 'tessera --kit DIR' or TESSERA_KIT")
        server = serve_audit(paths, address=address, kit_dir=party_kit)
    typer.echo(f"audit service on {address} serving {', '.join(sorted(paths))} "
               "(read-only; auditor certificates only); Ctrl-C stops it")
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(grace=2).wait()
    typer.echo("audit service stopped")


@app.command("pull")
def pull(source: Annotated[str, typer.Option("--from", help="HOST:PORT of an audit service.")],
         log: Annotated[str, typer.Option("--log", help="The log's name on that service.")],
         out: Annotated[Path, typer.Option("--out", help="Where to write the copy.")],
         ctx: typer.Context,
         kit: Annotated[Path | None, typer.Option(
             "--kit", help="The auditor kit; default: 'tessera --kit DIR' or "
             "TESSERA_KIT.")] = None,
         as_json: JsonOption = False) -> None:
    """Fetch a log over mutual TLS, write it to --out and verify the copy (party key pinned
    from the signed manifest in the auditor kit)."""
    from tessera.audit_service import pull_log  # gRPC: imported here, --help stays light

    with cli_boundary("--out"):
        auditor_kit = needed_kit(kit_from(ctx, kit), "pull")
        manifest = pinning_manifest(auditor_kit, "pull")
        data = pull_log(source, log=log, kit_dir=auditor_kit)
        atomic_write_bytes(out, data)
        report = verify_bytes(data, manifest=manifest)
    if as_json:
        print_json({**_report_json(report, out.name), "source": source, "name": log,
                    "out": str(out)})
        if not report.ok:
            raise typer.Exit(exit_status(ErrorCode.DATA_INVALID))
        return
    if not report.ok:
        typer.echo(f"FAILED: pulled {out.name}, but {_failure(report, out.name)}", err=True)
        raise typer.Exit(exit_status(ErrorCode.DATA_INVALID))
    typer.echo(f"OK: pulled {log!r} from {source} into {out.name}: {report.records} records "
               f"of {_whose(report)}, signed with the key the manifest gives it; chain and "
               f"signed checkpoints verify ({report.checkpointed} covered by a checkpoint)")
    typer.echo("tail unverified: records after the last checkpoint could have been cut; "
               f"run 'tessera audit checkpoint' on {out.name}, keep the result away from "
               "the party and pass it to 'tessera audit verify --checkpoint' later")
