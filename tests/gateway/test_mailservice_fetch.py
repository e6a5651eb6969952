"""One upstream FETCH answer holding two responses about one message: the asked content and
an unsolicited flag update (Dovecot's ``* n FETCH (UID n MODSEQ (m) FLAGS (...))`` for a
change another connection made, such as a claim's keywords on a just appended message).

The flag update says nothing about the content: before the fix its "left out" marker
overwrote the body the other response carried, so the dashboard answered 404 "message ...
is gone" for a message it had just fetched (tests/web/test_claims_web.py has the same
against Dovecot)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from imapgate.gateway.mailservice import MailService, cache_key
from imapgate.protocol import responses as rsp
from imapgate.protocol.fetch_items import FetchAttribute, Section
from imapgate.upstream.connection import CommandResult

BODY = b"Subject: hi\r\n\r\nhello\r\n"
WHOLE = FetchAttribute("BODY", Section(), peek=True)


class _Conn:
    def __init__(self, responses: list[rsp.Response]) -> None:
        self.responses = responses

    async def run(self, build: Any) -> CommandResult:
        return CommandResult(rsp.TaggedResponse("A1", "OK", None, "done"), list(self.responses))


class _Content:
    def __init__(self) -> None:
        self.put: dict[tuple[int, bytes], bytes | None] = {}

    def put_many(
        self, mailbox_id: int, uidvalidity: int, items: dict[tuple[int, bytes], bytes | None]
    ) -> None:
        self.put.update(items)


class _Service:
    def __init__(self) -> None:
        self.content = _Content()


def _fetch(responses: list[rsp.Response]) -> tuple[dict[tuple[int, bytes], bytes | None], _Content]:
    service = _Service()
    key = cache_key(WHOLE)
    got = asyncio.run(
        MailService._fetch_batch(
            service,  # type: ignore[arg-type]  # only .content is used
            _Conn(responses),  # type: ignore[arg-type]
            1,
            7,
            [74],
            {74: [key]},
            {key: WHOLE},
        )
    )
    return got, service.content


def _body(uid: int) -> rsp.FetchResponse:
    return rsp.FetchResponse(uid, {b"UID": uid, b"BODY[]": BODY})


def _flags(uid: int) -> rsp.FetchResponse:
    return rsp.FetchResponse(uid, {b"UID": uid, b"MODSEQ": 9, b"FLAGS": ("$Claimed", "$claimed_bob")})


@pytest.mark.parametrize("order", ["flags-after", "flags-before"])
def test_an_unsolicited_flag_update_does_not_hide_the_content(order: str) -> None:
    responses: list[rsp.Response] = [_body(74), _flags(74)]
    if order == "flags-before":
        responses.reverse()
    got, content = _fetch(responses)
    assert got[(74, cache_key(WHOLE))] == BODY
    assert content.put[(74, cache_key(WHOLE))] == BODY


def test_a_response_without_the_item_alone_is_still_nil_and_not_cached() -> None:
    got, content = _fetch([_flags(74)])
    assert (74, cache_key(WHOLE)) in got and got[(74, cache_key(WHOLE))] is None
    assert content.put == {}
