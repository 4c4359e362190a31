"""``tessera audit ...``: the auditor's tools over a party's audit log.

``verify`` needs no key: it checks the hash chain, the Merkle checkpoints and their
signatures, and names the first bad record and the kind of fault. ``show`` and ``export``
decrypt payloads with the auditor's X25519 key (the auditor kit's ``sealing.key``).
``serve`` runs the read-only audit service over a party's logs (coordinator or site kit);
``pull`` fetches a log from one over mutual TLS with the auditor kit and verifies the copy.
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

from common.errors import ErrorCode, TesseraError
from privacy.at_rest import atomic_write_bytes
from privacy.audit_log import (
    AuditEntry,
    AuditLog,
    export_checkpoint,
    load_checkpoint,
    read_records,
)
from privacy.audit_verify import VerifyReport, verify_bytes, verify_log
from privacy.manifest import SEALING_KEY_FILE, SIGNING_KEY_FILE, read_kit_info
from privacy.sealing import SealingKey
from privacy.signing import SigningKey
from tessera.audit_service import pull_log, serve_audit

app = typer.Typer(name="audit", help="Verify and read tamper-evident audit logs.",
                  no_args_is_help=True, add_completion=False)
console = Console()
LogArg = Annotated[Path, typer.Argument(help="The audit log file.")]
KeyOption = Annotated[Path, typer.Option("--key", help="The auditor's sealing key file.")]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _fail(err: TesseraError) -> typer.Exit:
    typer.echo(f"error: {err.message}", err=True)
    return typer.Exit(err.exit_code)


def _auditor_key(path: Path) -> SealingKey:
    try:
        return SealingKey(bytes.fromhex(path.read_text(encoding="ascii").strip()))
    except (OSError, ValueError):
        raise TesseraError(ErrorCode.KEY_MISSING, "--key: not a readable auditor key") from None


def _entries(log: Path, key: Path, checkpoint: Path | None, *, event: str | None,
             study: str | None, since: str | None) -> list[AuditEntry]:
    trusted = load_checkpoint(checkpoint) if checkpoint else None
    entries = read_records(log, auditor_key=_auditor_key(key), trusted_checkpoint=trusted)
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


def record_verification(kit: Path | None, log: Path, report: VerifyReport) -> None:
    """Append a verification run to the auditor's own audit log (auditor kits only)."""
    if kit is None or not (kit / SIGNING_KEY_FILE).exists() or \
            not (kit / SEALING_KEY_FILE).exists():
        return
    if read_kit_info(kit).role != "auditor":
        return
    signer = SigningKey(bytes.fromhex((kit / SIGNING_KEY_FILE).read_text().strip()))
    path = kit / "audit" / "auditor.log"
    if path.exists():
        trail = AuditLog.open(path, signing_key=signer)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        own = SealingKey(bytes.fromhex((kit / SEALING_KEY_FILE).read_text().strip()))
        trail = AuditLog.create(path, party="auditor", role="auditor", signing_key=signer,
                                auditor_public_hex=own.public_hex)
    trail.append("log_verified", actor="auditor", details={
        "log": log.name, "log_id": report.log_id, "records": report.records, "ok": report.ok,
        "fault": report.fault.value if report.fault else None,
        "first_bad_index": report.first_bad_index, "tail_verified": report.tail_verified})
    trail.checkpoint()


@app.command("verify")
def verify(ctx: typer.Context, log: LogArg, checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="A trusted checkpoint file.")] = None) -> None:
    """Check a log's integrity; exit non-zero naming the first bad record and the fault."""
    try:
        trusted = load_checkpoint(checkpoint) if checkpoint else None
        report = verify_log(log, trusted_checkpoint=trusted)
        kit = (ctx.find_root().obj or {}).get("kit")
        record_verification(kit, log, report)
    except TesseraError as err:
        raise _fail(err) from None
    if not report.ok:
        where = "preamble" if report.first_bad_index == -1 else \
            f"record {report.first_bad_index}"
        typer.echo(f"FAILED: {report.fault.value if report.fault else 'fault'} at {where}: "
                   f"{report.message}", err=True)
        raise typer.Exit(TesseraError(ErrorCode.DATA_INVALID, '').exit_code)
    if trusted is not None and report.fully_verified:
        typer.echo(f"OK: {report.records} records; chain, signed checkpoints and the trusted "
                   "checkpoint verify")
    else:
        typer.echo(f"INTACT, TAIL UNVERIFIED: {report.records} records; the chain and "
                   f"{'the trusted checkpoint' if trusted else 'the signed checkpoints'} verify "
                   f"({report.checkpointed} records under a signed checkpoint)")
        typer.echo("tail unverified: without a trusted checkpoint covering the end of the log, "
                   "records cut from or appended to its end cannot be ruled out; store one "
                   "with 'tessera audit checkpoint' and pass it with --checkpoint")
    if report.fault is not None:
        typer.echo(f"note: {report.message}")


@app.command("show")
def show(log: LogArg, key: KeyOption,
         as_json: Annotated[bool, typer.Option("--json")] = False,
         event: Annotated[str | None, typer.Option("--event")] = None,
         study: Annotated[str | None, typer.Option("--study")] = None,
         since: Annotated[str | None, typer.Option("--since")] = None,
         checkpoint: Annotated[Path | None, typer.Option("--checkpoint")] = None) -> None:
    """Decrypt and list records (filters: event type, study hash prefix, time)."""
    try:
        entries = _entries(log, key, checkpoint, event=event, study=study, since=since)
    except TesseraError as err:
        raise _fail(err) from None
    if as_json:
        typer.echo(json.dumps([_row(e) for e in entries], indent=2))
        return
    table = Table("index", "time", "actor", "event", "study", "details")
    for e in entries:
        r = _row(e)
        table.add_row(*(Text(str(v)) for v in (
            r["index"], r["time"], r["actor"], r["event"], (r["plan_hash"] or "")[:12],
            json.dumps(r["details"], sort_keys=True)[:80])))
    console.print(table)


@app.command("export")
def export(log: LogArg, key: KeyOption,
           out: Annotated[Path, typer.Option("--out", help="Output file.")],
           fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl") -> None:
    """Write decrypted records as JSON lines or CSV (spreadsheet formulas neutralised)."""
    try:
        if fmt not in ("jsonl", "csv"):
            raise TesseraError(ErrorCode.CONFIG_INVALID, "--format: jsonl or csv")
        rows = [_row(e) for e in _entries(log, key, None, event=None, study=None, since=None)]
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
    except TesseraError as err:
        raise _fail(err) from None
    typer.echo(f"{len(rows)} records written to {out.name}")


@app.command("checkpoint")
def checkpoint(log: LogArg, out: Annotated[Path, typer.Option(
        "--out", help="Where to store the trusted checkpoint.")]) -> None:
    """Verify a log and store its latest signed checkpoint, to detect truncation later."""
    try:
        report = verify_log(log)
        if not report.ok:
            raise TesseraError(ErrorCode.DATA_INVALID, f"log does not verify: {report.message}")
        latest = None
        for raw in log.read_bytes().split(b"\n"):
            if raw.startswith(b"{") and b'"type":"checkpoint"' in raw:
                latest = json.loads(raw)
        if latest is None:
            raise TesseraError(ErrorCode.NOT_FOUND, "the log holds no signed checkpoint yet")
        export_checkpoint(out, latest)
    except TesseraError as err:
        raise _fail(err) from None
    typer.echo(f"checkpoint of {latest['tree_size']} records stored in {out.name}")


@app.command("serve")
def serve(logs: Annotated[list[str], typer.Option(
              "--log", help="NAME=PATH of a log to serve (repeatable).")],
          address: Annotated[str, typer.Option("--address", help="HOST:PORT to listen on.")],
          kit: Annotated[Path, typer.Option(
              "--kit", help="This party's kit (coordinator or site).")]) -> None:
    """Serve audit logs read-only to the federation's auditor (mutual TLS) until Ctrl-C."""
    try:
        paths: dict[str, Path] = {}
        for item in logs:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"--log: {item!r} is not NAME=PATH")
            if name in paths:
                raise TesseraError(ErrorCode.CONFIG_INVALID, f"--log: {name!r} given twice")
            paths[name] = Path(path).expanduser().absolute()
        server = serve_audit(paths, address=address, kit_dir=kit)
    except TesseraError as err:
        raise _fail(err) from None
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
         kit: Annotated[Path, typer.Option("--kit", help="The auditor kit.")],
         out: Annotated[Path, typer.Option("--out", help="Where to write the copy.")]) -> None:
    """Fetch a log over mutual TLS, write it to --out and verify the copy."""
    try:
        data = pull_log(source, log=log, kit_dir=kit)
        atomic_write_bytes(out, data)
        report = verify_bytes(data)
    except TesseraError as err:
        raise _fail(err) from None
    if not report.ok:
        where = "preamble" if report.first_bad_index == -1 else \
            f"record {report.first_bad_index}"
        fault = report.fault.value if report.fault else "a fault"
        typer.echo(f"FAILED: pulled {out.name}, but {fault} at {where}: {report.message}",
                   err=True)
        raise typer.Exit(TesseraError(ErrorCode.DATA_INVALID, '').exit_code)
    typer.echo(f"OK: pulled {log!r} from {source} into {out.name}: {report.records} records, "
               f"chain and signed checkpoints verify ({report.checkpointed} covered by a "
               "checkpoint)")
    if not report.tail_verified:
        typer.echo("tail unverified: records after the last checkpoint could have been cut; "
                   f"run 'tessera audit checkpoint' on {out.name} and keep the result")
