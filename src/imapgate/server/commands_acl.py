"""Handlers of the RFC 4314 ACL commands: SETACL, DELETEACL, GETACL,
LISTRIGHTS, MYRIGHTS.

Each is one operation through ``Service.execute`` (the rights table asks
``a`` for the first four and ``l`` for MYRIGHTS); the codec has already
answered BAD for malformed identifiers and rights (``protocol/acl.py``), the
service answers BAD for letters or identifiers the model does not know, and
NO with a response code for everything else.  A folder that does not exist
and one the user may not see get the same NO.
"""

from __future__ import annotations

from ..gateway import operations as ops
from ..gateway.acl_policy import missing_folder
from ..protocol import commands as cmd
from ..protocol import responses as rsp
from .session import AUTH, Done, Session, command


def _folder(s: Session, name: str) -> str:
    """``name`` as the replica spells it; a missing folder answers as the rights
    check answers for one the user may not see.  A virtual folder ("Claimed by
    me", "Recovered") is no replica folder but exists: MYRIGHTS answers for it
    (Thunderbird asks it of every listed folder and shows a refusal as an alert)."""
    if s.gw.replica.get(name) is None and not s.gw.service.virtual.is_virtual(name):
        raise missing_folder(name)
    return name


def _wire(letters: str) -> str:
    """Rights as MYRIGHTS and ACL write them: with RFC 4314 §2.1.1's virtual c and d."""
    text = letters
    if set(letters) & set("kx"):
        text += "c"
    if set(letters) & set("te"):
        text += "d"
    return text


@command(cmd.SetAcl, AUTH)
async def setacl(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.SetAcl)
    name = _folder(s, c.mailbox)
    await s.gw.service.execute(s.require_actor(), ops.SetAcl(name, c.identifier, c.rights))
    return Done("SETACL completed")


@command(cmd.DeleteAcl, AUTH)
async def deleteacl(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.DeleteAcl)
    name = _folder(s, c.mailbox)
    await s.gw.service.execute(s.require_actor(), ops.DeleteAcl(name, c.identifier))
    return Done("DELETEACL completed")


@command(cmd.GetAcl, AUTH)
async def getacl(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.GetAcl)
    name = _folder(s, c.mailbox)
    entries = await s.gw.service.execute(s.require_actor(), ops.GetAcl(name))
    s.send_response(rsp.AclResponse(name, tuple((e.identifier, e.rights) for e in entries)))
    return Done("GETACL completed")


@command(cmd.ListRights, AUTH)
async def listrights(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.ListRights)
    name = _folder(s, c.mailbox)
    required, optional = await s.gw.service.execute(s.require_actor(), ops.ListRights(name, c.identifier))
    s.send_response(rsp.ListRightsResponse(name, c.identifier, required, optional))
    return Done("LISTRIGHTS completed")


@command(cmd.MyRights, AUTH)
async def myrights(s: Session, c: cmd.Command) -> Done:
    assert isinstance(c, cmd.MyRights)
    name = _folder(s, c.mailbox)
    letters = await s.gw.service.execute(s.require_actor(), ops.MyRights(name))
    s.send_response(rsp.MyRightsResponse(name, _wire(letters)))
    return Done("MYRIGHTS completed")
