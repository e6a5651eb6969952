"""What the dashboard reads of the team store, named in the gateway (web/ never
imports store/, team/ or replica/: tests/test_architecture.py ``web-no-state``).

The web's claims, history, audit and recovery pages (web/claims_data.py,
web/journal_data.py) take these types and the audit query from here; every
write still goes through ``Service.execute`` (claims) or the ``Restorer``.
"""

from __future__ import annotations

from ..replica.mailbox import MailboxIndex as MailboxIndex
from ..team.audit import AuditQuery as AuditQuery
from ..team.audit import AuditRecord as AuditRecord
from ..team.audit import search as audit_search
from ..team.audit_actions import ACTIONS as ACTIONS
from ..team.claims import CLAIMED as CLAIMED
from ..team.claims import Claim as Claim
from ..team.recovery_store import ItemFilter as ItemFilter
from ..team.recovery_store import RecoveryItem as RecoveryItem

__all__ = [
    "ACTIONS",
    "CLAIMED",
    "AuditQuery",
    "AuditRecord",
    "Claim",
    "ItemFilter",
    "MailboxIndex",
    "RecoveryItem",
    "audit_search",
]
