"""Every input limit of the codec, named, with the reason for its value.

Limits keep memory bounded whatever a peer sends.  Exceeding one raises a
``CodecError`` that names the limit, so an operator can see which one bit.
"""

from __future__ import annotations

# --- client -> gateway (commands) -----------------------------------------

#: One command line (without literal data).  RFC 7162 §4 asks clients to keep
#: lines to 8192 octets and servers to accept at least that; long UID sets from
#: sync clients (mbsync, offlineimap) come close, so allow eight times as much.
MAX_COMMAND_LINE = 64 * 1024

#: A literal inside a command other than APPEND (passwords, search strings,
#: mailbox names).  Nothing legitimate there is near 1 MiB.
MAX_COMMAND_LITERAL = 1024 * 1024

#: An APPENDed message.  Hosters commonly cap mail at 25–50 MiB; base64 inflates
#: attachments by 4/3, so 64 MiB admits any mail a hoster would accept.
MAX_APPEND_LITERAL = 64 * 1024 * 1024

#: A whole command frame (lines plus literals) other than APPEND data: bounds
#: the memory one client can pin with many small literals.
MAX_COMMAND_FRAME = 4 * 1024 * 1024

#: RFC 7888 LITERAL-: non-synchronizing literals may be at most 4096 octets.
MAX_LITERAL_MINUS = 4096

#: Nesting of parenthesised lists and search keys.  Real clients nest a few
#: levels (OR trees from filters); 64 keeps recursion far below Python's limit.
MAX_NESTING = 64

#: Items in one parenthesised list / sequence-set ranges in one set.  A UID set
#: of a 100,000-message folder with every other message selected has 50,000
#: ranges; allow twice that.
MAX_LIST_ITEMS = 100_000

#: Messages in one MULTIAPPEND command: protects against a frame of thousands
#: of tiny messages pinning CPU in a single transaction.
MAX_APPEND_MESSAGES = 1_000

#: Length of a tag.  RFC 9051 puts no limit; real clients use < 16 characters.
MAX_TAG_LENGTH = 64

# --- upstream -> gateway (responses) --------------------------------------

#: One response line from upstream (without literals).  A SEARCH result or
#: VANISHED list of a large folder is one long line: 100,000 UIDs as text is
#: about 700 KB, so allow 16 MiB.
MAX_RESPONSE_LINE = 16 * 1024 * 1024

#: One literal from upstream: a whole message body (BODY[]).  Larger than any
#: message a client may append, with margin for servers that accept more.
MAX_RESPONSE_LITERAL = 256 * 1024 * 1024

#: A whole response frame from upstream (line plus literals): a FETCH of
#: several sections of one large message.
MAX_RESPONSE_FRAME = MAX_RESPONSE_LITERAL * 4
