"""A change set as text, for the change bus between nodes (``replica/logbus.py``).

JSON, not pickle: the log is read by every node, and a row someone wrote into the
database must never run code.  Only the dataclasses listed in ``_TYPES`` (the row
changes of ``store/changes.py``, the events of ``events.py`` and the records they
carry) are decoded; anything else is a ``WireError``.  Tuples, frozensets, mappings
with non-text keys and bytes keep their types (JSON has none of them), so a decoded
change set equals the one encoded.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from ..store import changes as rc
from . import events as ev
from .changes import ChangeSet
from .mailbox import MessageRecord

_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        rc.MessageRow,
        rc.InsertMailbox,
        rc.UpdateMailbox,
        rc.DeleteMailbox,
        rc.ClearMessages,
        rc.AddMessages,
        rc.SetSharedFlags,
        rc.ExpungeMessages,
        rc.TrimExpunged,
        rc.WritePrivateSets,
        rc.SetPrivateModseqs,
        rc.CompactPrivateModseqs,
        rc.DropPrivateFlag,
        rc.RestampMessages,
        rc.PrivateRows,
        rc.ParkMailboxName,
        rc.ReplaceMailbox,
        rc.SetMeta,
        ev.FlagsChanged,
        ev.MessagesAdded,
        ev.ExpungedPrivate,
        ev.MessagesExpunged,
        ev.MailboxReset,
        ev.ModeChanged,
        ev.MailboxListChanged,
        ev.NoteAdded,
        MessageRecord,
    )
}


class WireError(ValueError):
    """A change-log payload this version cannot read."""


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _TYPES.get(name) is not type(value):
            raise WireError(f"{name} cannot travel on the change bus")
        return {"@": name, **{f.name: _enc(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return {"@t": [_enc(v) for v in value]}
    if isinstance(value, frozenset):
        return {"@f": sorted((_enc(v) for v in value), key=repr)}
    if isinstance(value, (bytes, bytearray)):
        return {"@b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, dict) or hasattr(value, "items"):
        return {"@m": [[_enc(k), _enc(v)] for k, v in value.items()]}
    raise WireError(f"{type(value).__name__} cannot travel on the change bus")


def _dec(value: Any) -> Any:
    if isinstance(value, list):
        return [_dec(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "@t" in value:
        return tuple(_dec(v) for v in value["@t"])
    if "@f" in value:
        return frozenset(_dec(v) for v in value["@f"])
    if "@b" in value:
        return base64.b64decode(value["@b"])
    if "@m" in value:
        return {_dec(k): _dec(v) for k, v in value["@m"]}
    cls = _TYPES.get(value.get("@", ""))
    if cls is None:
        raise WireError(f"unknown type {value.get('@')!r} in a change-log payload")
    try:
        return cls(**{k: _dec(v) for k, v in value.items() if k != "@"})
    except TypeError as exc:
        raise WireError(f"{cls.__name__}: {exc}") from None


def encode(changes: ChangeSet) -> str:
    return json.dumps(
        {"rows": [_enc(r) for r in changes.rows.items], "events": [_enc(e) for e in changes.events]},
        separators=(",", ":"),
    )


def decode(text: str) -> ChangeSet:
    try:
        data = json.loads(text)
        out = ChangeSet()
        for row in data["rows"]:
            out.add(_dec(row))
        out.events.extend(_dec(e) for e in data["events"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise WireError(f"malformed change-log payload: {exc}") from None
    return out
