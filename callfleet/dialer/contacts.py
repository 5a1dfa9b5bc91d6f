"""Contact import: CSV (or rows) → validated, E.164-normalised contacts of a campaign.

Each row is checked on its own. A bad row is rejected with its row number and the
reason, and the rest import. Numbers on the tenant's do-not-call list are stored as
suppressed with the reason; a number already in the campaign, or repeated in the
upload, is skipped with the reason. Everything is inserted in the caller's
transaction, so a failure stores nothing and loses nothing stored before.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from callfleet.dialer.db import new_id, utcnow
from callfleet.dialer.models import Campaign, Contact, ContactStatus, DncEntry
from callfleet.dialer.windows import zone_for_number

#: Column names accepted for the phone number, first match wins.
PHONE_COLUMNS = ("phone", "phone_number", "number", "msisdn")
NAME_MAX = 200
VARIABLES_MAX = 50
BATCH_ROWS = 5000


@dataclass(frozen=True, slots=True)
class RowIssue:
    """A row that was not imported (rejected) or not called (suppressed)."""

    row: int
    phone: str | None
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    #: Stored but never called (do-not-call), or skipped (duplicates).
    suppressed: list[RowIssue] = field(default_factory=list)
    #: Not stored: the row is invalid.
    rejected: list[RowIssue] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ParsedRow:
    row: int
    phone_e164: str
    name: str | None
    timezone: str | None
    variables: dict[str, str]


def csv_rows(source: str | bytes | io.TextIOBase) -> Iterator[dict[str, str]]:
    """Rows of a CSV with a header line; ``ValueError`` names what is wrong with the
    file as a whole (encoding, no header, no phone column)."""
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"CSV is not UTF-8: invalid byte at offset {e.start}") from e
    stream = io.StringIO(source) if isinstance(source, str) else source
    reader = csv.DictReader(stream)
    header = reader.fieldnames
    if not header:
        raise ValueError("CSV is empty: expected a header line with a phone column")
    columns = [h.strip().lower() for h in header]
    if not any(c in PHONE_COLUMNS for c in columns):
        raise ValueError(
            f"CSV header has no phone column (one of {', '.join(PHONE_COLUMNS)}); "
            f"found: {', '.join(columns)}"
        )
    reader.fieldnames = columns
    yield from reader  # extra fields arrive under the None key


def parse_row(raw: Mapping[Any, Any], row: int, default_region: str) -> ParsedRow | RowIssue:
    extra = raw.get(None)
    if extra:
        return RowIssue(row, None, f"row has {len(extra)} more field(s) than the header")
    values = {str(k): (v or "").strip() for k, v in raw.items() if k is not None}
    phone_text = next((values[c] for c in PHONE_COLUMNS if values.get(c)), "")
    if not phone_text:
        return RowIssue(row, None, "missing phone number")
    try:
        number = phonenumbers.parse(phone_text, default_region)
    except phonenumbers.NumberParseException as e:
        return RowIssue(row, phone_text, f"phone {phone_text!r} is not a phone number: {e._msg}")
    if not phonenumbers.is_valid_number(number):
        return RowIssue(
            row, phone_text, f"phone {phone_text!r} is not a valid number (region {default_region})"
        )
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    zone = values.get("timezone") or None
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return RowIssue(row, phone_text, f"timezone {zone!r} is not an IANA time zone")
    else:
        zone = zone_for_number(number)
    name = values.get("name") or None
    if name is not None and len(name) > NAME_MAX:
        return RowIssue(row, phone_text, f"name is longer than {NAME_MAX} characters")
    variables = {
        k: v
        for k, v in values.items()
        if k not in PHONE_COLUMNS and k not in ("name", "timezone") and v
    }
    if len(variables) > VARIABLES_MAX:
        return RowIssue(row, phone_text, f"row has more than {VARIABLES_MAX} variables")
    return ParsedRow(row, e164, name, zone, variables)


def import_contacts(
    session: Session,
    campaign: Campaign,
    rows: Iterable[Mapping[Any, Any]],
    *,
    batch_rows: int = BATCH_ROWS,
) -> ImportReport:
    """Validate ``rows`` and insert the good ones into ``campaign`` (in ``session``'s
    transaction; the caller commits). Row numbers count data rows from 1."""
    report = ImportReport()
    existing = set(
        session.scalars(select(Contact.phone_e164).where(Contact.campaign_id == campaign.id))
    )
    dnc = dnc_reasons(session, campaign.tenant_id)
    first_row: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    now = utcnow()
    for index, raw in enumerate(rows, start=1):
        parsed = parse_row(raw, index, campaign.default_region)
        if isinstance(parsed, RowIssue):
            report.rejected.append(parsed)
            continue
        phone = parsed.phone_e164
        if phone in first_row:
            report.suppressed.append(RowIssue(index, phone, f"duplicate of row {first_row[phone]}"))
            continue
        first_row[phone] = index
        if phone in existing:
            report.suppressed.append(RowIssue(index, phone, "already in this campaign"))
            continue
        status, reason = ContactStatus.PENDING, None
        if phone in dnc:
            status, reason = ContactStatus.SUPPRESSED, dnc_reason(dnc[phone])
            report.suppressed.append(RowIssue(index, phone, reason))
        batch.append(
            {
                "id": new_id("con"),
                "tenant_id": campaign.tenant_id,
                "campaign_id": campaign.id,
                "phone_e164": phone,
                "name": parsed.name,
                "variables": parsed.variables,
                "timezone": parsed.timezone,
                "status": status,
                "suppressed_reason": reason,
                "source_row": index,
                "created_at": now,
            }
        )
        if status is ContactStatus.PENDING:
            report.imported += 1
        if len(batch) >= batch_rows:
            session.execute(insert(Contact), batch)
            batch = []
    if batch:
        session.execute(insert(Contact), batch)
    return report


def dnc_reasons(
    session: Session, tenant_id: str, phones: list[str] | None = None
) -> dict[str, str]:
    """The tenant's do-not-call numbers (only those in ``phones`` when given) and why."""
    query = select(DncEntry.phone_e164, DncEntry.reason).where(DncEntry.tenant_id == tenant_id)
    if phones is not None:
        if not phones:
            return {}
        query = query.where(DncEntry.phone_e164.in_(phones))
    return {phone: reason for phone, reason in session.execute(query)}


def dnc_reason(reason: str) -> str:
    return f"on the do-not-call list ({reason})" if reason else "on the do-not-call list"
