"""Real Thunderbird and neomutt against imapgate, checked from a capture of the wire.

Not part of CI (Thunderbird is heavy): run ``bash scripts/check_clients.sh`` by hand on a Debian
machine (about 2-3 minutes; ``--only demo|guard`` runs one part). What it does:

1. starts ``imapgate demo`` (Dovecot "hoster" + gateway, plain IMAP on 127.0.0.1), Xvfb, and
   tshark on the gateway's port;
2. Thunderbird, driven through Marionette (its built-in remote protocol; chrome JS), with the
   ``imapgate clients thunderbird`` tag snippet in the profile's user.js:
   a first run creates the accounts (alice with Thunderbird's defaults, carol with CONDSTORE
   switched on) and stores their passwords in the login manager; a second run starts the way a
   user's does: logs in, lists folders, opens INBOX, downloads headers, opens the first unread
   message (which marks it read), marks one read and stars one, and goes IDLE. Claims (issue
   12): bob claims a message over IMAP, the tags must show in alice's Thunderbird; alice moves
   it to Support, the gateway refuses (NO [INUSE]) and the alert's text is recorded;
3. neomutt in tmux as bob: opens INBOX, reads the first unread message; alice claims a message
   over IMAP first, neomutt shows its keywords, bob deletes it and syncs: refused; quits;
4. checks through its own IMAP sessions that each person's read mark reached the gateway and
   stayed private (alice's read does not show for bob and vice versa);
5. prints a summary of the capture per connection: commands seen, every NO/BAD;
6. the reply guard (issue 14): Dovecot with LMTP and an auth socket, and Postfix as the hoster's
   submission server, both as tests/support starts them; ``imapgate serve`` with
   ``[submission]``; alice replies to a customer's mail through the gateway (smtplib, STARTTLS)
   and claims another; bob, in a new Thunderbird profile whose outgoing server is the gateway's
   submission port (STARTTLS, the test certificate accepted as a security exception; or
   ``--smtp-security plain``), replies to both from the compose window: both refusals' dialog
   texts are recorded, the first reply discarded, the second sent again (the override), and it
   must reach the customer's mailbox exactly once.

Thunderbird on a loaded machine: the timeouts for its start and Marionette's NewSession are
options (``--start-timeout``, ``--session-timeout``, ``--session-attempts``,
``--command-timeout``); NewSession is retried on a new connection; a modal alert that holds up
the start is photographed and confirmed (xdotool); alerts are recorded, never silently closed.

Exit status 0 only if every client command was answered OK, no unexpected alert was shown,
and the read-state, claim and guard checks held. Artefacts (screenshots, redacted transcript,
tmux captures, the guard gateway's log and audit journal) stay in the work directory.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imap_capture  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))  # tests.support: the Postfix and Dovecot set-up of the tests
# The imapgate of the Python running this script (check_clients.sh: the project's .venv, or
# $IMAPGATE_PYTHON's), which imports the source on PYTHONPATH first.
IMAPGATE = str(Path(sys.executable).with_name("imapgate"))

# Every alert Thunderbird has open: top-level commonDialog windows (IMAP alerts) and the
# window-modal ones drawn inside a window (gDialogBox: the compose window's "Send Message Error").
_DIALOGS_HELPER = """
const openDialogs = (only) => {  // only: a window, for its own alerts (drawn in it or opened by it)
  const found = [];
  for (const w of [...Services.wm.getEnumerator("")]) {
    if (w.document.documentURI.includes("commonDialog")) {
      // Still loading when it has no infoBody yet.
      if (w.document.getElementById("infoBody") && (!only || w.opener === only)) found.push(w.document);
      continue;
    }
    if (only && w !== only) continue;
    for (const frame of w.document.querySelectorAll("browser, iframe")) {
      const doc = frame.contentDocument;
      if (doc && doc.documentURI.includes("commonDialog") && doc.getElementById("infoBody")) found.push(doc);
    }
  }
  const title = doc => doc.title || (doc.getElementById("infoTitle") || {}).textContent || "";
  return found.map(doc => ({doc, title: title(doc), text: doc.getElementById("infoBody").textContent}));
};
"""

# Chrome JS run through Marionette. `arguments` are the call's args; the last one resolves.
_SETUP_ACCOUNT_JS = """
const [user, pass, port, condstore, isDefault] = arguments;
const resolve = arguments[arguments.length - 1];
(async () => {
  const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
  info.init("imap://127.0.0.1", null, "imap://127.0.0.1", user, pass, "", "");
  await Services.logins.addLoginAsync(info);
  const server = MailServices.accounts.createIncomingServer(user, "127.0.0.1", "imap");
  server.port = port;
  server.socketType = Ci.nsMsgSocketType.plain;
  server.authMethod = Ci.nsMsgAuthMethod.passwordCleartext;
  // What the account wizard sets: check mail at startup (the default pref is false).
  server.loginAtStartUp = true;
  server.setBoolValue("use_condstore", condstore);
  const identity = MailServices.accounts.createIdentity();
  identity.fullName = user;
  identity.email = user + "@example.com";
  const account = MailServices.accounts.createAccount();
  account.incomingServer = server;
  account.addIdentity(identity);
  try { MailServices.accounts.localFoldersServer; }
  catch (e) { MailServices.accounts.createLocalMailAccount(); }
  if (isDefault) MailServices.accounts.defaultAccount = account;
  MailServices.accounts.saveAccountInfo();
  resolve({key: account.key, root: server.rootFolder.URI});
})().catch(e => resolve({error: String(e)}));
"""

# Open a folder in the 3-pane tab and wait until Thunderbird knows all `expected` messages
# (its view may show fewer rows: threads are collapsed).
_OPEN_FOLDER_JS = """
const [user, folderName, expected, timeoutMs] = arguments;
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.gTabmail.currentAbout3Pane;
const server = MailServices.accounts.findServer(user, "127.0.0.1", "imap");
const folder = folderName === "INBOX"
  ? server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox)
  : server.rootFolder.getChildNamed(folderName);
about3Pane.displayFolder(folder.URI);
const started = Date.now();
const poll = () => {
  const view = about3Pane.gDBView;
  const rows = view ? view.rowCount : 0;
  const total = folder.getTotalMessages(false);
  if (total >= expected && rows > 0) {
    // One more round so that the unread count has caught up with the headers.
    win.setTimeout(() => resolve({folder: folder.URI, messages: total, rows,
                                  unread: folder.getNumUnread(false)}), 1000);
  }
  else if (Date.now() - started > timeoutMs) resolve({error: "timeout", folder: folder.URI, rows, total});
  else win.setTimeout(poll, 250);
};
poll();
"""

# Select the first unread message of the open folder; report what the message pane shows.
_READ_FIRST_UNREAD_JS = """
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.gTabmail.currentAbout3Pane;
const view = about3Pane.gDBView;
let index = -1;
for (let i = 0; i < view.rowCount; i++) {
  if (!view.getMsgHdrAt(i).isRead) { index = i; break; }
}
if (index < 0) { resolve({error: "no unread message"}); }
else {
  const hdr = view.getMsgHdrAt(index);
  about3Pane.threadTree.selectedIndex = index;
  const started = Date.now();
  const poll = () => {
    const browser = about3Pane.messageBrowser.contentWindow.getMessagePaneBrowser();
    const text = browser.contentDocument && browser.contentDocument.body
      ? browser.contentDocument.body.textContent : "";
    if ((text.length > 0 && hdr.isRead) || Date.now() - started > 20000) {
      resolve({uid: hdr.messageKey, subject: hdr.mime2DecodedSubject, isRead: hdr.isRead,
               shown: text.replace(/\\s+/g, " ").slice(0, 300)});
    } else win.setTimeout(poll, 250);
  };
  poll();
}
"""


# "Mark as read" and the star, as the message list's context menu does: both are UID STOREs.
# Marks the first unread message read and stars the first unstarred one; returns their UIDs.
_MARK_READ_AND_STAR_JS = """
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const view = win.gTabmail.currentAbout3Pane.gDBView;
let unread = null, unstarred = null;
for (let i = 0; i < view.rowCount; i++) {
  const hdr = view.getMsgHdrAt(i);
  if (!unread && !hdr.isRead) unread = hdr;
  if (!unstarred && !hdr.isFlagged) unstarred = hdr;
}
if (!unread || !unstarred) { resolve({error: "nothing left to mark"}); }
else {
  unread.folder.markMessagesRead([unread], true);
  unstarred.folder.markMessagesFlagged([unstarred], true);
  resolve({read: unread.messageKey, starred: unstarred.messageKey});
}
"""


# Wait until the header of `uid` in `user`'s INBOX carries every keyword in `keywords` (IDLE push);
# after `nudgeMs` ask for a folder update once, as clicking the folder would. Reports which it took.
_WAIT_KEYWORDS_JS = """
const [user, uid, keywords, nudgeMs, timeoutMs] = arguments;
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const server = MailServices.accounts.findServer(user, "127.0.0.1", "imap");
const folder = server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
const started = Date.now();
let nudged = false;
const poll = () => {
  const hdr = folder.msgDatabase.getMsgHdrForKey(uid);
  const have = hdr ? hdr.getStringProperty("keywords").toLowerCase().split(" ") : [];
  const tags = MailServices.tags.getAllTags().filter(t => have.includes(t.key.toLowerCase()))
    .map(t => ({key: t.key, name: t.tag, color: t.color}));
  if (hdr && keywords.every(k => have.includes(k.toLowerCase()))) {
    resolve({uid, keywords: have.filter(k => k), tags, subject: hdr.mime2DecodedSubject,
             after_ms: Date.now() - started, nudged});
  } else if (Date.now() - started > timeoutMs) {
    resolve({error: "timeout", uid, keywords: have, nudged});
  } else {
    if (!nudged && Date.now() - started > nudgeMs) { nudged = true; folder.updateFolder(win.msgWindow); }
    win.setTimeout(poll, 250);
  }
};
poll();
"""

# Select message `uid` in the open INBOX view (so the screenshot shows its tag in the message pane).
_SELECT_UID_JS = """
const [uid] = arguments;
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.gTabmail.currentAbout3Pane;
const folder = about3Pane.gFolder;
const index = about3Pane.gDBView.findIndexOfMsgHdr(folder.msgDatabase.getMsgHdrForKey(uid), true);
about3Pane.threadTree.selectedIndex = index;
win.setTimeout(() => resolve({index}), 2000);
"""

# Move message `uid` from `user`'s INBOX to `target` as drag-and-drop or "Move To" does
# (MailServices.copy.copyMessages with isMove and the window's msgWindow, so that server alerts go
# to the user). Records every alert the user is shown: the mail session's user-feedback alerts
# (how Thunderbird reports an IMAP NO) and any modal dialog that opens, with its text; then closes
# the dialogs and reports whether the header is still in INBOX.
_MOVE_JS = (
    _DIALOGS_HELPER
    + """
const [user, uid, target, waitMs] = arguments;
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const server = MailServices.accounts.findServer(user, "127.0.0.1", "imap");
const inbox = server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
const dest = server.rootFolder.getChildNamed(target);
const hdr = inbox.msgDatabase.getMsgHdrForKey(uid);
const alerts = [], dialogs = [];
const feedback = {
  QueryInterface: ChromeUtils.generateQI(["nsIMsgUserFeedbackListener"]),
  onAlert(message, url) { alerts.push(String(message)); return false; },  // false: shown as usual
};
MailServices.mailSession.addUserFeedbackListener(feedback);
const dialogText = d => {
  const doc = d.document || d;
  const info = doc.getElementById && (doc.getElementById("infoBody") || doc.getElementById("infoTitle"));
  return info ? info.textContent : (doc.documentElement ? doc.documentElement.textContent : "");
};
const observer = {
  observe(subject, topic) {
    win.setTimeout(() => {
      const title = subject.document ? subject.document.title : "";
      try { dialogs.push({topic, title, text: dialogText(subject)}); }
      catch (e) { dialogs.push({topic, error: String(e)}); }
    }, 500);
  },
};
Services.obs.addObserver(observer, "common-dialog-loaded");
Services.obs.addObserver(observer, "tabmodal-dialog-loaded");
let copyStatus = null;
const listener = {
  QueryInterface: ChromeUtils.generateQI(["nsIMsgCopyServiceListener"]),
  onStartCopy() {}, onProgress() {}, setMessageKey() {}, getMessageId() { return null; },
  onStopCopy(status) { copyStatus = status; },
};
MailServices.copy.copyMessages(inbox, [hdr], dest, true, listener, win.msgWindow, true);
const started = Date.now();
const finish = () => {
  Services.obs.removeObserver(observer, "common-dialog-loaded");
  Services.obs.removeObserver(observer, "tabmodal-dialog-loaded");
  MailServices.mailSession.removeUserFeedbackListener(feedback);
  const open = [...Services.wm.getEnumerator("")]
    .filter(w => w.document.documentURI.includes("commonDialog"));
  resolve({uid, copyStatus: copyStatus === null ? null : "0x" + (copyStatus >>> 0).toString(16),
           alerts, dialogs, openDialogs: open.length,
           shown: openDialogs().map(d => ({title: d.title, text: d.text})),
           notifications: [...win.document.querySelectorAll("notification-message")]
             .map(n => n.messageText ? n.messageText.textContent : n.textContent),
           stillInInbox: !!inbox.msgDatabase.getMsgHdrForKey(uid)});
};
const poll = () => {
  if (Date.now() - started > waitMs) finish();
  else win.setTimeout(poll, 250);
};
poll();
"""
)


# Close the modal dialogs Thunderbird has open (the user's "OK"), reporting their texts.
_CLOSE_DIALOGS_JS = (
    _DIALOGS_HELPER
    + """
const resolve = arguments[arguments.length - 1];
const closed = [];
for (const d of openDialogs()) {
  closed.push({title: d.title, text: d.text});
  const dialog = d.doc.getElementById("commonDialog");
  if (dialog && dialog.acceptDialog) dialog.acceptDialog(); else d.doc.defaultView.close();
}
resolve({closed: closed.length, dialogs: closed});
"""
)


# The reply guard (issue 14). bob's account gets the gateway as its outgoing server: its SMTP
# password in the login manager, STARTTLS (with a certificate exception for the gateway's test
# certificate, as "Confirm Security Exception" stores it) or no encryption, normal password,
# and the shared address as the identity's address.
_SETUP_SMTP_JS = """
const [user, pass, accountKey, smtpPort, security, certBase64, email] = arguments;
const resolve = arguments[arguments.length - 1];
(async () => {
  const info = Cc["@mozilla.org/login-manager/loginInfo;1"].createInstance(Ci.nsILoginInfo);
  info.init("smtp://127.0.0.1", null, "smtp://127.0.0.1", user, pass, "", "");
  await Services.logins.addLoginAsync(info);
  const out = MailServices.outgoingServer.createServer("smtp");
  const smtp = out.QueryInterface(Ci.nsISmtpServer);
  smtp.hostname = "127.0.0.1";
  smtp.port = smtpPort;
  out.socketType = security === "starttls" ? Ci.nsMsgSocketType.alwaysSTARTTLS : Ci.nsMsgSocketType.plain;
  out.authMethod = Ci.nsMsgAuthMethod.passwordCleartext;
  out.username = user;
  out.description = "imapgate";
  MailServices.outgoingServer.defaultServer = out;
  if (certBase64) {
    const certdb = Cc["@mozilla.org/security/x509certdb;1"].getService(Ci.nsIX509CertDB);
    const cert = certdb.constructX509FromBase64(certBase64);
    Cc["@mozilla.org/security/certoverride;1"].getService(Ci.nsICertOverrideService)
      .rememberValidityOverride("127.0.0.1", smtpPort, {}, cert, false);
  }
  const account = MailServices.accounts.getAccount(accountKey);
  const identity = account.defaultIdentity;
  identity.email = email;
  identity.fullName = user + " (Info)";
  identity.smtpServerKey = out.key;
  MailServices.accounts.saveAccountInfo();
  resolve({smtp: out.key, serverURI: out.serverURI.spec});
})().catch(e => resolve({error: String(e)}));
"""

# Reply to the message with Message-ID `messageId` in `user`'s INBOX as the Reply button does:
# select it, then MailServices.compose.OpenComposeWindow with ReplyToSender; wait for the compose
# window with its subject and recipient filled in, and type a line at the top.
_OPEN_REPLY_JS = """
const [user, messageId, text, timeoutMs] = arguments;
const resolve = arguments[arguments.length - 1];
const win = Services.wm.getMostRecentWindow("mail:3pane");
const about3Pane = win.gTabmail.currentAbout3Pane;
const server = MailServices.accounts.findServer(user, "127.0.0.1", "imap");
const inbox = server.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
const hdr = inbox.msgDatabase.getMsgHdrForMessageID(messageId);
if (!hdr) { resolve({error: "no message " + messageId + " in " + user + "'s INBOX"}); }
else {
  about3Pane.threadTree.selectedIndex = about3Pane.gDBView.findIndexOfMsgHdr(hdr, true);
  const identity = MailServices.accounts.getFirstIdentityForServer(server);
  MailServices.compose.OpenComposeWindow(null, hdr, inbox.getUriForMsg(hdr),
    Ci.nsIMsgCompType.ReplyToSender, Ci.nsIMsgCompFormat.Default, identity, null, win.msgWindow);
  const started = Date.now();
  const poll = () => {
    const w = Services.wm.getMostRecentWindow("msgcompose");
    const subject = w && w.document.getElementById("msgSubject");
    const ready = w && w.gMsgCompose && subject && subject.value && w.GetCurrentEditor && w.GetCurrentEditor()
      && w.document.readyState === "complete";
    if (ready && Date.now() - started > 1500) {
      let typed = true;
      try { w.GetCurrentEditor().beginningOfDocument(); w.GetCurrentEditor().insertText(text); }
      catch (e) { typed = String(e); }
      const fields = w.gMsgCompose.compFields;
      resolve({subject: subject.value, to: fields.to, from: fields.from, typed,
               inReplyTo: hdr.messageId, title: w.document.title});
    } else if (Date.now() - started > timeoutMs) {
      resolve({error: "no compose window", title: w && w.document.title});
    }
    else win.setTimeout(poll, 250);
  };
  poll();
}
"""

# Press Send (cmd_sendNow, what the Send button runs) in the open compose window and wait for
# the outcome: the window closes (sent), or an alert opens (its title and text recorded and
# left open for the screenshot; the window stays open), or nothing happens in `timeoutMs`.
_SEND_JS = (
    _DIALOGS_HELPER
    + """
const [timeoutMs] = arguments;
const resolve = arguments[arguments.length - 1];
const w = Services.wm.getMostRecentWindow("msgcompose");
const main = Services.wm.getMostRecentWindow("mail:3pane");
if (!w) { resolve({error: "no compose window"}); }
else {
  const before = openDialogs(w).length;
  const statuses = [];
  const started = Date.now();
  w.goDoCommand("cmd_sendNow");
  const done = (outcome, dialogs) => {
    resolve({outcome, after_ms: Date.now() - started, statuses,
             dialogs: dialogs.map(d => ({title: d.title, text: d.text})),
             composeOpen: !w.closed, title: w.closed ? null : w.document.title});
  };
  const poll = () => {
    try { check(); } catch (e) { resolve({error: "send poll: " + e}); }
  };
  const check = () => {
    if (!w.closed) {
      const status = w.document.getElementById("statusText");
      const text = status ? (status.value || status.textContent || "") : "";
      if (text && statuses[statuses.length - 1] !== text) statuses.push(text);
    }
    const dialogs = openDialogs(w);
    if (dialogs.length > before) main.setTimeout(() => done("alert", openDialogs(w)), 1000);
    else if (w.closed) done("sent", []);
    else if (Date.now() - started > timeoutMs) done("timeout", dialogs);
    else main.setTimeout(poll, 200);
  };
  poll();
}
"""
)


class MarionetteError(RuntimeError):
    """Thunderbird's remote protocol did not come up (or broke): the message says what and when."""


class MarionetteTimeout(MarionetteError, TimeoutError):
    """A Marionette command got no answer in time."""


@dataclass(frozen=True)
class Timeouts:
    """How long to wait for Thunderbird on a loaded machine (all in seconds; see --help)."""

    start: float = 300.0  # Thunderbird started -> its Marionette port accepts a connection
    session: float = 240.0  # WebDriver:NewSession answered (Thunderbird's first window loaded)
    session_attempts: int = 3  # NewSession tries, each on a new connection
    command: float = 300.0  # any later command (scripts have their own, shorter, limits)


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


class Marionette:
    """Just enough of the Marionette protocol (length-prefixed JSON over TCP) to run chrome JS.

    Starting is the fragile part on a loaded machine: the port opens early, but
    ``WebDriver:NewSession`` is answered only once Thunderbird's first window has loaded, which
    took more than two minutes on a 2-core machine shared with test runs. So: wait for the port
    up to ``timeouts.start`` (failing at once if Thunderbird exits), then give NewSession
    ``timeouts.session`` per attempt, and on a timeout close the connection and try again on a
    new one (the server ends a session with its connection), up to ``timeouts.session_attempts``.
    Every failure names the step, the time waited, the load average and Thunderbird's log.
    """

    #: While waiting for NewSession, ``on_stall`` is called every this many seconds.
    STALL_EVERY = 10.0

    def __init__(
        self,
        port: int,
        timeouts: Timeouts,
        proc: subprocess.Popen[bytes] | None = None,
        log: Path | None = None,
        on_stall: Callable[[], None] | None = None,
    ) -> None:
        self.port = port
        self.timeouts = timeouts
        self._proc = proc
        self._log = log
        self._on_stall = on_stall
        self._buffer = b""
        self._id = 0
        #: Alerts Marionette reported (their texts), oldest first.
        self.alerts: list[dict[str, str]] = []
        started = time.monotonic()
        for attempt in range(1, timeouts.session_attempts + 1):
            self._connect(started)
            t0 = time.monotonic()
            deadline = t0 + timeouts.session
            try:
                self._read(deadline, stall=True)  # the server's hello
                # "ignore": Marionette's default ("dismiss and notify") closes every alert at once,
                # and a script running meanwhile returns null: the alerts are what we check.
                # (Marionette takes the parameters themselves as the capabilities.)
                caps = {"unhandledPromptBehavior": "ignore"}
                error, _ = self._call_once("WebDriver:NewSession", caps, deadline=deadline, stall=True)
                if error:
                    raise RuntimeError(f"WebDriver:NewSession: {error.get('message')}")
            except (TimeoutError, ConnectionError) as exc:
                waited = time.monotonic() - t0
                self._sock.close()
                self._buffer = b""
                print(
                    f"  Marionette: no NewSession answer after {waited:.0f} s "
                    f"(attempt {attempt}/{timeouts.session_attempts}, {type(exc).__name__}: {exc}; "
                    f"load average {load_average()})",
                    flush=True,
                )
                if attempt == timeouts.session_attempts:
                    raise MarionetteError(
                        f"Thunderbird did not answer Marionette's WebDriver:NewSession: "
                        f"{timeouts.session_attempts} attempts of {timeouts.session:.0f} s each, "
                        f"{time.monotonic() - started:.0f} s since start, load average {load_average()}"
                        f" (raise --session-timeout / --session-attempts){self._log_tail()}"
                    ) from exc
                continue
            self.session_after = time.monotonic() - started
            print(f"  Marionette session after {self.session_after:.0f} s (attempt {attempt})", flush=True)
            break
        self.call("Marionette:SetContext", {"value": "chrome"})
        # The async scripts' own limit (WebDriver's default is 30 s).
        self.call("WebDriver:SetTimeouts", {"script": int(timeouts.command * 1000)})

    def _connect(self, started: float) -> None:
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise MarionetteError(
                    f"Thunderbird exited (status {self._proc.returncode}) before Marionette answered"
                    f"{self._log_tail()}"
                )
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                return
            except OSError as exc:
                if time.monotonic() - started > self.timeouts.start:
                    raise MarionetteError(
                        f"Thunderbird's Marionette port {self.port} did not open within "
                        f"{self.timeouts.start:.0f} s ({exc}; load average {load_average()}; "
                        f"raise --start-timeout){self._log_tail()}"
                    ) from exc
                time.sleep(0.5)

    def _log_tail(self, lines: int = 15) -> str:
        if self._log is None or not self._log.exists():
            return ""
        tail = self._log.read_text(errors="replace").splitlines()[-lines:]
        return f"\n  last lines of {self._log}:\n    " + "\n    ".join(tail) if tail else ""

    def _read(self, deadline: float, *, stall: bool = False) -> Any:
        """One message; the buffer changes only when it is complete (a timeout loses nothing)."""
        while True:
            head, sep, rest = self._buffer.partition(b":")
            if sep and len(rest) >= int(head):
                size = int(head)
                message, self._buffer = rest[:size], rest[size:]
                return json.loads(message)
            self._recv(deadline, stall)

    def _recv(self, deadline: float, stall: bool) -> None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            self._sock.settimeout(min(self.STALL_EVERY, left) if stall else left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                if stall and self._on_stall is not None:
                    self._on_stall()
                continue
            if not chunk:
                raise ConnectionError("Marionette closed the connection")
            self._buffer += chunk
            return

    def call(
        self, name: str, params: dict[str, Any], *, deadline: float | None = None, stall: bool = False
    ) -> Any:
        """One command. An alert Thunderbird has open makes Marionette refuse commands
        ("unexpected alert open", with the alert's text): the text is kept in ``alerts``, the
        alert confirmed (WebDriver:AcceptAlert, the user's OK) and the command sent again."""
        for _ in range(10):
            error, value = self._call_once(name, params, deadline=deadline, stall=stall)
            if not error:
                return value
            if error.get("error") != "unexpected alert open":
                raise RuntimeError(f"{name}: {error.get('message')}")
            text = (error.get("data") or {}).get("text", "") or error.get("message", "")
            self.alerts.append({"before": name, "text": text, "at": time.strftime("%H:%M:%S")})
            print(f"  alert open before {name}: {text!r} (confirmed)", flush=True)
            with contextlib.suppress(RuntimeError):
                self._call_once("WebDriver:AcceptAlert", {})
            time.sleep(0.5)
        raise RuntimeError(f"{name}: alerts kept opening: {self.alerts[-3:]}")

    def _call_once(
        self, name: str, params: dict[str, Any], *, deadline: float | None = None, stall: bool = False
    ) -> tuple[dict[str, Any] | None, Any]:
        self._id += 1
        data = json.dumps([0, self._id, name, params]).encode()
        self._sock.sendall(str(len(data)).encode() + b":" + data)
        t0 = time.monotonic()
        if deadline is None:  # past the scripts' own scriptTimeout
            deadline = t0 + self.timeouts.command + 30
        while True:
            try:
                message = self._read(deadline, stall=stall)
            except TimeoutError as exc:
                if stall:
                    raise
                raise MarionetteTimeout(
                    f"Thunderbird did not answer {name} within {time.monotonic() - t0:.0f} s "
                    f"(load average {load_average()}){self._log_tail()}"
                ) from exc
            if message[0] == 1 and message[1] == self._id:
                return message[2], message[3]

    def run_async(self, script: str, *args: object, retry: bool = True) -> Any:
        """Run chrome JS; an alert that opens while it runs ends it with null (Marionette): then
        it runs again (``retry``, for scripts that may run twice) after the alert is confirmed."""
        for _ in range(3 if retry else 1):
            result = self.call(
                "WebDriver:ExecuteAsyncScript",
                # A new sandbox each time: a script an alert cut short may still resolve later,
                # and in a shared sandbox that would answer the next script.
                {"script": script, "args": list(args), "sandbox": "system", "newSandbox": True},
            )["value"]
            if result is not None:
                break
            self.call("WebDriver:GetWindowHandle", {})  # confirms the alert (see call)
        if isinstance(result, dict) and "error" in result:
            raise RuntimeError(f"Thunderbird: {result}")
        return result

    def quit(self) -> None:
        # Quitting closes the socket, sometimes before the answer.
        with contextlib.suppress(ConnectionError, OSError):
            self.call("Marionette:Quit", {"flags": ["eAttemptQuit"]})
        self._sock.close()


@dataclass
class Processes:
    """Everything this script started, stopped by process group at the end."""

    started: list[subprocess.Popen[bytes]]

    def start(self, argv: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self, since: int = 0) -> None:
        """Stop what was started (since the ``since``-th start), the last started first."""
        for proc in reversed(self.started[since:]):
            self.stop(proc)
        del self.started[since:]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_demo(procs: Processes, work: Path, port: int) -> dict[str, str]:
    log = work / "demo.log"
    procs.start(
        [IMAPGATE, "demo", "--data-dir", str(work / "demo"), "--port", str(port)],
        log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the logins are printed, not logged
    )
    wait_for("the demo gateway", lambda: "Press Ctrl-C" in log.read_text(errors="replace"), 120)
    logins = dict(re.findall(r"^\s+(\w+)\s+password\s+(\S+)$", log.read_text(), re.MULTILINE))
    if not logins:
        raise RuntimeError(f"no logins in {log}")
    return logins


def seen_uids(port: int, user: str, password: str, folder: str = "INBOX", key: str = "SEEN") -> set[int]:
    """The UIDs `user` has read (or flagged, with key="FLAGGED") in `folder`, looked at
    read-only (EXAMINE changes nothing)."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(user, password)
        imap.select(folder, readonly=True)
        status, data = imap.uid("SEARCH", key)
        if status != "OK":
            raise RuntimeError(f"UID SEARCH {key} as {user}: {status} {data}")
        return {int(uid) for uid in (data[0] or b"").split()}
    finally:
        imap.logout()


def message_count(port: int, user: str, password: str, folder: str) -> int:
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login(user, password)
        status, data = imap.select(folder, readonly=True)
        if status != "OK":
            raise RuntimeError(f"EXAMINE {folder} as {user}: {status} {data}")
        return int(data[0] or 0)
    finally:
        imap.logout()


def screenshot(display: str, path: Path) -> None:
    subprocess.run(["import", "-display", display, "-window", "root", str(path)], check=False)


class StartupDialogs:
    """Thunderbird's modal alerts that appear before Marionette has a session.

    Thunderbird answers WebDriver:NewSession only once its first window has finished starting,
    and a modal alert opened during start (an IMAP ``NO`` on a folder Thunderbird looks at while
    discovering folders) holds that up until someone clicks OK. Called while NewSession is
    waiting: each such window (class thunderbird, not the main window) is photographed with the
    whole screen and confirmed with Return, as a user would; what was seen is kept in ``seen``.
    """

    def __init__(self, display: str, work: Path, name: str, grace: float = 15.0) -> None:
        self.display, self.work, self.name, self.grace = display, work, name, grace
        self.started = time.monotonic()
        self.seen: list[dict[str, str]] = []

    def _xdotool(self, *args: str) -> str:
        return subprocess.run(
            ["xdotool", *args],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "DISPLAY": self.display},
        ).stdout

    def __call__(self) -> None:
        if time.monotonic() - self.started < self.grace or shutil.which("xdotool") is None:
            return
        for window in self._xdotool("search", "--onlyvisible", "--class", "thunderbird").split():
            title = self._xdotool("getwindowname", window).strip()
            if not title or "Mozilla Thunderbird" in title:
                continue
            shot = self.work / f"{self.name}-startup-dialog-{len(self.seen) + 1}.png"
            screenshot(self.display, shot)
            self._xdotool("windowfocus", window)
            self._xdotool("key", "--window", window, "Return")
            self.seen.append({"window": title, "screenshot": str(shot)})
            print(
                f"  {self.name}: a modal {title!r} window held up the start; confirmed it "
                f"(screenshot {shot.name})",
                flush=True,
            )


def thunderbird_profile(work: Path, marionette_port: int, name: str = "thunderbird-profile") -> Path:
    profile = work / name
    profile.mkdir()
    prefs = {
        "marionette.port": marionette_port,
        # No first-run distractions: default-client check, account hub, telemetry, updates.
        "mail.shell.checkDefaultClient": False,
        "mail.provider.enabled": False,
        "mail.rights.version": 1,
        "mailnews.start_page.enabled": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "datareporting.policy.dataSubmissionPolicyBypassNotification": True,
        "toolkit.telemetry.reportingpolicy.firstRun": False,
        "app.update.enabled": False,
        "app.update.auto": False,
        "extensions.update.enabled": False,
        "mail.spotlight.firstRunDone": True,
        # No account hub ("Welcome to Thunderbird") over a profile that starts without accounts:
        # the script creates them.
        "app.use_without_mail_account": True,
        "mail.winsearch.firstRunDone": True,
        # Mark read as soon as a message is shown (the default waits for nothing, too).
        "mailnews.mark_message_read.delay": False,
    }
    (profile / "user.js").write_text(
        "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
    )
    return profile


def start_thunderbird(
    procs: Processes, work: Path, profile: Path, display: str, name: str
) -> subprocess.Popen[bytes]:
    return procs.start(
        [
            "thunderbird",
            "--profile",
            str(profile),
            "--no-remote",
            "--marionette",
            "-remote-allow-system-access",
        ],
        work / f"{name}.log",
        env={**os.environ, "DISPLAY": display, "MOZ_CRASHREPORTER_DISABLE": "1"},
    )


def demo_config(work: Path) -> Path:
    return work / "demo" / "imapgate.toml"


def imap_login(port: int, user: str, password: str) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, password)
    return imap


def check_claims(
    tb: Marionette, work: Path, display: str, port: int, logins: dict[str, str]
) -> dict[str, Any]:
    """Issue 12 in alice's Thunderbird (INBOX open and idling): bob claims a message over IMAP,
    the tag must show; alice then moves it to Support, the gateway refuses with NO [INUSE], and
    what Thunderbird shows is recorded; the message must stay in INBOX."""
    out: dict[str, Any] = {}
    bob = imap_login(port, "bob", logins["bob"])
    try:
        bob.select("INBOX")
        status, data = bob.uid("SEARCH", "ALL")
        uid = max(int(u) for u in data[0].split())
        status, data = bob.uid("STORE", str(uid), "+FLAGS", "($Claimed)")
        out["bob_store"] = f"{status} {data}"
        if status != "OK":
            raise RuntimeError(f"bob's claim of UID {uid}: {status} {data}")
    finally:
        bob.logout()
    out["shown"] = tb.run_async(_WAIT_KEYWORDS_JS, "alice", uid, ["$claimed", "$claimed_bob"], 20000, 60000)
    tb.run_async(_SELECT_UID_JS, uid)
    screenshot(display, work / "thunderbird-alice-claimed.png")
    support_before = message_count(port, "alice", logins["alice"], "Support")
    mark = len(tb.alerts)
    # Not run twice: an alert (the refusal) ends the script with null, and stays open for the
    # screenshot; the next command confirms it and records its text in tb.alerts.
    out["move"] = tb.run_async(_MOVE_JS, "alice", uid, "Support", 8000, retry=False)
    screenshot(display, work / "thunderbird-alice-move-refused.png")
    out["closed"] = tb.run_async(_CLOSE_DIALOGS_JS)
    out["alerts"] = tb.alerts[mark:]
    # After the user's OK: is the message back in alice's message list (Thunderbird took it out
    # of the list when it sent the MOVE)?
    try:
        out["back_in_list"] = tb.run_async(_WAIT_KEYWORDS_JS, "alice", uid, ["$claimed"], 10000, 30000)
    except RuntimeError as exc:
        out["back_in_list"] = {"error": str(exc)}
    screenshot(display, work / "thunderbird-alice-after-refusal.png")
    alice = imap_login(port, "alice", logins["alice"])
    try:
        alice.select("INBOX", readonly=True)
        status, data = alice.uid("FETCH", str(uid), "(FLAGS)")
        out["upstream_after"] = [d.decode() if isinstance(d, bytes) else str(d) for d in data if d]
    finally:
        alice.logout()
    out["support_count"] = (support_before, message_count(port, "alice", logins["alice"], "Support"))
    out["uid"] = uid
    return out


def claim_failures(claims: dict[str, Any]) -> list[str]:
    """What must hold after check_claims (the texts themselves are printed for docs/clients.md)."""
    failures: list[str] = []
    tags = {t["key"].lower() for t in claims["shown"].get("tags", [])}
    if not {"$claimed", "$claimed_bob"} <= tags:
        failures.append(f"Thunderbird shows no claim tags for UID {claims['uid']}: {claims['shown']}")
    if not any("$Claimed" in line for line in claims["upstream_after"]):
        failures.append(f"after the refused move, UID {claims['uid']} is not claimed in INBOX: {claims}")
    if "error" in claims.get("back_in_list", {}):
        failures.append(f"the refused message is not back in alice's list: {claims['back_in_list']}")
    if claims["support_count"][0] != claims["support_count"][1]:
        failures.append(f"the refused move still changed Support: {claims['support_count']}")
    move = claims["move"] or {"alerts": [], "dialogs": [], "shown": []}
    told = move["alerts"] + [d.get("text", "") for d in move["dialogs"] + move.get("shown", [])]
    told += [a["text"] for a in claims.get("alerts", [])] + [d["text"] for d in claims["closed"]["dialogs"]]
    if not any("bob is handling this message" in t for t in told):
        failures.append(f"Thunderbird did not show the refusal text: {claims['move']}")
    return failures


def run_thunderbird(
    procs: Processes, work: Path, display: str, port: int, logins: dict[str, str], timeouts: Timeouts
) -> dict[str, Any]:
    counts = {f: message_count(port, "alice", logins["alice"], f) for f in ("INBOX", "Support")}
    marionette_port = free_port()
    profile = thunderbird_profile(work, marionette_port)
    # The tag definitions for the claim keywords, as docs/claims.md tells users to install them.
    snippet = subprocess.run(
        [IMAPGATE, "clients", "thunderbird", "--config", str(demo_config(work))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with (profile / "user.js").open("a") as user_js:
        user_js.write(snippet)

    # First run: create the accounts the way the wizard would, then quit so that the second
    # run starts like every later start of a configured Thunderbird.
    proc = start_thunderbird(procs, work, profile, display, "thunderbird-setup")
    setup_dialogs = StartupDialogs(display, work, "thunderbird-setup")
    tb = Marionette(marionette_port, timeouts, proc, work / "thunderbird-setup.log", setup_dialogs)
    tb.run_async(_SETUP_ACCOUNT_JS, "alice", logins["alice"], port, False, True)
    tb.run_async(_SETUP_ACCOUNT_JS, "carol", logins["carol"], port, True, False)
    tb.quit()
    proc.wait(60)

    proc = start_thunderbird(procs, work, profile, display, "thunderbird")
    start_dialogs = StartupDialogs(display, work, "thunderbird")
    tb = Marionette(marionette_port, timeouts, proc, work / "thunderbird.log", start_dialogs)
    result: dict[str, Any] = {"startup_dialogs": setup_dialogs.seen + start_dialogs.seen, "dialogs": []}
    steps = Steps(tb, result)
    steps.run("alice_inbox", lambda: tb.run_async(_OPEN_FOLDER_JS, "alice", "INBOX", counts["INBOX"], 60000))
    steps.run("alice_read", lambda: tb.run_async(_READ_FIRST_UNREAD_JS))
    time.sleep(3)  # the STORE, then back to IDLE
    screenshot(display, work / "thunderbird-alice-inbox.png")
    steps.run("alice_marked", lambda: tb.run_async(_MARK_READ_AND_STAR_JS))
    time.sleep(3)
    steps.run("claims", lambda: check_claims(tb, work, display, port, logins))
    steps.run(
        "alice_support", lambda: tb.run_async(_OPEN_FOLDER_JS, "alice", "Support", counts["Support"], 60000)
    )
    steps.run("carol_inbox", lambda: tb.run_async(_OPEN_FOLDER_JS, "carol", "INBOX", counts["INBOX"], 60000))
    steps.run("carol_read", lambda: tb.run_async(_READ_FIRST_UNREAD_JS))
    time.sleep(3)
    screenshot(display, work / "thunderbird-carol-inbox.png")
    result["version"] = thunderbird_version(tb)
    tb.quit()
    proc.wait(60)
    return result


def thunderbird_version(tb: Marionette) -> str:
    version: str = tb.call(
        "WebDriver:ExecuteScript",
        {"script": "return Services.appinfo.version", "args": [], "sandbox": "system"},
    )["value"]
    return version


class Steps:
    """Runs the Thunderbird steps one by one: prints each result as it comes (a run that stops
    half-way still shows how far it got), and after each step confirms the modal alerts that
    Thunderbird opened meanwhile (recorded in ``result["dialogs"]`` with the step's name)."""

    def __init__(self, tb: Marionette, result: dict[str, Any]) -> None:
        self.tb, self.result = tb, result
        self.seen_alerts = len(tb.alerts)

    def run(self, name: str, action: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        value = action()
        self.result[name] = value
        print(f"  [{time.monotonic() - t0:5.1f} s] {name}: {value}", flush=True)
        self.sweep(name)
        return value

    def sweep(self, after: str) -> None:
        closed = self.tb.run_async(_CLOSE_DIALOGS_JS)["dialogs"]
        # Alerts Marionette reported (and that were confirmed) since the last sweep.
        for alert in self.tb.alerts[self.seen_alerts :]:
            self.result["dialogs"].append({"after": after, "title": "Alert", "text": alert["text"]})
        self.seen_alerts = len(self.tb.alerts)
        for dialog in closed:
            self.result["dialogs"].append({"after": after, **dialog})
            print(f"  dialog after {after}: {dialog['title']!r}: {dialog['text']!r}", flush=True)


class Tmux:
    """A private tmux server (own socket), so nothing else's sessions are touched."""

    def __init__(self, work: Path) -> None:
        self.socket = str(work / "tmux.sock")

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "neomutt")

    def gone(self) -> bool:
        """True once the session ended (its server exits with its last session)."""
        listing = subprocess.run(["tmux", "-S", self.socket, "list-sessions"], capture_output=True, text=True)
        return listing.returncode != 0 or "neomutt" not in listing.stdout

    def wait_screen(self, what: str, pattern: str, timeout: float = 30.0) -> str:
        wait_for(what, lambda: re.search(pattern, self.screen()) is not None, timeout)
        return self.screen()


def run_neomutt(work: Path, port: int, password: str) -> dict[str, str]:
    muttrc = work / "neomuttrc"
    muttrc.write_text(
        f"""set imap_user = "bob"
set imap_pass = "{password}"
set folder = "imap://bob@127.0.0.1:{port}/"
set spoolfile = "+INBOX"
set ssl_starttls = no
set ssl_force_tls = no
set imap_check_subscribed = yes
set imap_idle = yes
set imap_condstore = yes
set imap_qresync = yes
set mail_check = 5
set timeout = 5
set quit = yes
set mark_old = no
set move = no
set sort = date
set header_cache = ""
set message_cachedir = ""
set delete = yes
set index_format = "%4C %Z %-34.34g %s"
"""
    )
    muttrc.chmod(0o600)
    tmux = Tmux(work)
    out: dict[str, str] = {}
    tmux.run(
        "new-session",
        "-d",
        "-s",
        "neomutt",
        "-x",
        "160",
        "-y",
        "45",
        f"TERM=screen-256color neomutt -n -F {muttrc}",
    )
    try:
        out["index"] = tmux.wait_screen("neomutt's index", r"INBOX.*\[Msgs:\d+")
        tmux.run("send-keys", "-t", "neomutt", "Tab")  # next new/unread message
        time.sleep(1)
        tmux.run("send-keys", "-t", "neomutt", "Enter")
        out["pager"] = tmux.wait_screen("neomutt's pager", r"(?m)^Subject: ")
        tmux.run("send-keys", "-t", "neomutt", "q")  # pager -> index
        out["index_after"] = tmux.wait_screen("neomutt's index again", r"INBOX.*\[Msgs:\d+")
        # Claims (issue 12): the message alice claimed, limited to by its keyword (%g shows
        # keywords), deleted and the folder synced: the gateway refuses the \Deleted.
        tmux.run("send-keys", "-t", "neomutt", "l")
        time.sleep(0.5)
        tmux.run("send-keys", "-t", "neomutt", "~Y claimed_alice", "Enter")
        limited = r"\$claimed_alice.*\n(?s:.*)Msgs:1/"
        out["claimed"] = tmux.wait_screen("neomutt's limit to alice's claim", limited)
        tmux.run("send-keys", "-t", "neomutt", "d")
        time.sleep(0.5)
        tmux.run("send-keys", "-t", "neomutt", "$")
        out["synced"] = tmux.wait_screen("neomutt's sync", r"kept|deleted|INUSE|handling", 15)
        tmux.run("send-keys", "-t", "neomutt", "q")  # quit: syncs \Seen, LOGOUT
        wait_for("neomutt to quit", tmux.gone, 30)
    finally:
        for name, text in out.items():
            (work / f"neomutt-{name}.txt").write_text(text)
        # Usually already gone with its last session.
        with contextlib.suppress(subprocess.CalledProcessError):
            tmux.run("kill-server")
    return out


# ------------------------------------------------------------------ the reply guard (issue 14)

SHARED_ADDRESS = "info@example.test"
CUSTOMER = "customer@customer.test"


@dataclass
class GuardSetup:
    """The hoster with a submission server, and a gateway with [submission] in front of it."""

    dovecot: Any  # imapgate.demo.DovecotServer (Dovecot with LMTP and an auth socket)
    postfix: Any  # tests.support.postfix.PostfixServer (the hoster's submission server)
    cert: Any  # tests.support.tls.TestCertificate (Postfix's and the gateway's)
    config: Path
    imap_port: int
    smtp_port: int
    security: str
    logins: dict[str, str]
    original: str  # the customer's Message-ID, with <>
    subject: str
    claimed: str  # another customer mail's Message-ID: alice claims it


def start_guard_setup(procs: Processes, stack: contextlib.ExitStack, work: Path, security: str) -> GuardSetup:
    """Dovecot (LMTP, auth socket) and Postfix as the tests start them (tests/support), a
    customer's mail in the shared INBOX, and ``imapgate serve`` with ``[submission]`` relaying
    to that Postfix with STARTTLS (the gateway trusts the test certificate via SSL_CERT_FILE)."""
    import email.utils
    import secrets
    import uuid
    from datetime import UTC, datetime

    from tests.support.peers import DOVECOT_USERS
    from tests.support.postfix import PostfixServer
    from tests.support.tls import make_certificate

    from imapgate.demo import DovecotServer
    from imapgate.demo.sample_mail import SampleMessage

    base = work / "guard"
    base.mkdir()
    cert = make_certificate(base / "tls")
    dovecot = DovecotServer(
        base / "dovecot",
        users=DOVECOT_USERS,
        enable_lmtp=True,
        auth_listener=True,
        auth_penalty=False,
        max_userip_connections=50,
    )
    stack.callback(dovecot.close)
    original = f"<{uuid.uuid4().hex}@customer.test>"
    subject = "Lieferung 4711"
    raw = (
        f"From: Kunde <{CUSTOMER}>\r\nTo: Info <{SHARED_ADDRESS}>\r\nSubject: {subject}\r\n"
        f"Message-ID: {original}\r\nDate: {email.utils.formatdate(localtime=True)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nWo bleibt meine Lieferung 4711?\r\n"
    ).encode()
    claimed = f"<{uuid.uuid4().hex}@customer.test>"
    raw2 = (
        f"From: Kunde <{CUSTOMER}>\r\nTo: Info <{SHARED_ADDRESS}>\r\nSubject: Rechnung 0815\r\n"
        f"Message-ID: {claimed}\r\nDate: {email.utils.formatdate(localtime=True)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nDie Rechnung 0815 ist falsch.\r\n"
    ).encode()
    now = datetime.now(UTC)
    dovecot.populate(
        "shared",
        {
            "INBOX": [SampleMessage(raw2, (), now), SampleMessage(raw, (), now)],
            "Sent": [],
            "Drafts": [],
            "Trash": [],
        },
    )
    dovecot.start()
    postfix = PostfixServer(dovecot, certificate=cert)
    stack.callback(postfix.close)
    postfix.start()

    imap_port, smtp_port = free_port(), free_port()
    config = base / "imapgate.toml"
    config.write_text(
        f"""# Written by scripts/check_clients.py: the reply guard with a real submission server.
[upstream]
host = "127.0.0.1"
port = {dovecot.port}
tls = "none"
user = "shared"
password = "{DOVECOT_USERS["shared"]}"

[server]
listen = ["127.0.0.1:{imap_port}"]
allow_plaintext = true               # IMAP without TLS: localhost only
certificate = "{cert.cert}"
private_key = "{cert.key}"

[store]
data_dir = "{base / "gateway"}"

[submission]
listen = ["127.0.0.1:{smtp_port}"]   # STARTTLS with the [server] certificate
allow_plaintext = {"true" if security == "plain" else "false"}
allowed_from = ["{SHARED_ADDRESS}"]
time_zone = "Europe/Berlin"

[submission.upstream]                # the hoster's submission server (Postfix)
host = "127.0.0.1"
port = {postfix.port}
tls = "starttls"
"""
    )
    logins = {name: f"{name}-{secrets.token_hex(3)}" for name in ("alice", "bob")}
    for name, password in logins.items():
        subprocess.run(
            [IMAPGATE, "user", "add", name, "--password-stdin", "--config", str(config)],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
    log = work / "guard-gateway.log"
    procs.start(
        [IMAPGATE, "serve", "--config", str(config)],
        log,
        env={**os.environ, "SSL_CERT_FILE": str(cert.cert), "PYTHONUNBUFFERED": "1"},
    )
    wait_for(
        "the gateway with [submission]",
        lambda: (
            "submission listening" in log.read_text(errors="replace")
            and "listening on 127.0.0.1" in log.read_text(errors="replace")
        ),
        120,
    )
    return GuardSetup(
        dovecot, postfix, cert, config, imap_port, smtp_port, security, logins, original, subject, claimed
    )


def replies_at_customer(setup: GuardSetup, original: str | None = None) -> dict[str, dict[str, str]]:
    """The replies to the customer's mail in the customer's INBOX at Dovecot (delivered by
    Postfix over LMTP): Message-ID -> some headers."""
    import email.parser

    from tests.support.postfix import inbox_messages

    parser = email.parser.BytesHeaderParser()
    found: dict[str, dict[str, str]] = {}
    for path in inbox_messages(setup.dovecot, "customer"):
        with contextlib.suppress(FileNotFoundError):
            headers = parser.parsebytes(path.read_bytes())
            if (headers.get("In-Reply-To") or "").strip() == (original or setup.original):
                mid = (headers.get("Message-ID") or "").strip()
                found[mid] = {k: str(headers.get(k, "")) for k in ("From", "Subject", "User-Agent", "Date")}
    return found


def alice_replies(setup: GuardSetup) -> str:
    """Colleague alice answers the customer first, through the gateway (smtplib, STARTTLS)."""
    import email.utils
    import smtplib
    import uuid

    mid = f"<{uuid.uuid4().hex}@example.test>"
    text = (
        f"From: Info <{SHARED_ADDRESS}>\r\nTo: Kunde <{CUSTOMER}>\r\nSubject: Re: {setup.subject}\r\n"
        f"Message-ID: {mid}\r\nDate: {email.utils.formatdate(localtime=True)}\r\n"
        f"In-Reply-To: {setup.original}\r\nReferences: {setup.original}\r\n\r\n"
        "Ihre Lieferung kommt morgen. -- alice\r\n"
    )
    with smtplib.SMTP("127.0.0.1", setup.smtp_port, timeout=60) as client:
        client.ehlo("alice.example.test")
        client.starttls(context=setup.cert.client_context())
        client.ehlo("alice.example.test")
        client.login("alice", setup.logins["alice"])
        refused = client.sendmail(SHARED_ADDRESS, [CUSTOMER], text.encode())
    if refused:
        raise RuntimeError(f"alice's reply: recipients refused {refused}")
    wait_for("alice's reply at the customer", lambda: mid in replies_at_customer(setup), 60)
    return mid


def alice_claims(setup: GuardSetup) -> str:
    """Colleague alice claims the other customer mail through the gateway (IMAP, as her
    Thunderbird's tag would)."""
    imap = imap_login(setup.imap_port, "alice", setup.logins["alice"])
    try:
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", "HEADER", "Message-ID", setup.claimed.strip("<>"))
        uid = (data[0] or b"").split()[0].decode()
        status, data = imap.uid("STORE", uid, "+FLAGS", "($Claimed)")
        if status != "OK":
            raise RuntimeError(f"alice's claim: {status} {data}")
        return " ".join(d.decode() if isinstance(d, bytes) else str(d) for d in data if d)
    finally:
        imap.logout()


# Close the compose window without sending or saving (the user's "Discard").
_DISCARD_COMPOSE_JS = """
const resolve = arguments[arguments.length - 1];
const w = Services.wm.getMostRecentWindow("msgcompose");
if (w) {
  w.gContentChanged = false;
  try { w.gMsgCompose.bodyModified = false; } catch (e) {}
  w.close();
}
Services.wm.getMostRecentWindow("mail:3pane").setTimeout(() => resolve({closed: !w || w.closed}), 1000);
"""


def original_flags_at_hoster(setup: GuardSetup) -> str:
    imap = imaplib.IMAP4("127.0.0.1", setup.dovecot.port)
    try:
        imap.login("shared", setup.dovecot.users["shared"])
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "HEADER", "Message-ID", setup.original.strip("<>"))
        uid = (data[0] or b"").split()[0].decode()
        _, data = imap.uid("FETCH", uid, "(FLAGS)")
        return " ".join(d.decode() if isinstance(d, bytes) else str(d) for d in data if d)
    finally:
        imap.logout()


def run_reply_guard(
    procs: Processes, work: Path, display: str, setup: GuardSetup, timeouts: Timeouts
) -> dict[str, Any]:
    """Issue 14 in bob's Thunderbird: alice has replied through the gateway; bob replies to the
    same mail from the compose window, sending through the gateway's submission port. The
    gateway must refuse (550 5.7.1, alice's reply named) and Thunderbird show that text; the
    compose window stays open; sending again (the override) goes out and reaches the customer
    once."""
    result: dict[str, Any] = {"dialogs": []}
    result["alice_reply"] = alice_replies(setup)
    print(f"  alice replied through the gateway: {result['alice_reply']}", flush=True)
    marionette_port = free_port()
    profile = thunderbird_profile(work, marionette_port, "thunderbird-guard-profile")
    proc = start_thunderbird(procs, work, profile, display, "thunderbird-guard")
    dialogs = StartupDialogs(display, work, "thunderbird-guard")
    tb = Marionette(marionette_port, timeouts, proc, work / "thunderbird-guard.log", dialogs)
    result["startup_dialogs"] = dialogs.seen
    steps = Steps(tb, result)
    account = steps.run(
        "bob_account",
        lambda: tb.run_async(_SETUP_ACCOUNT_JS, "bob", setup.logins["bob"], setup.imap_port, False, True),
    )
    cert_b64 = ""
    if setup.security == "starttls":
        pem = setup.cert.cert.read_text()
        cert_b64 = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    steps.run(
        "bob_smtp",
        lambda: tb.run_async(
            _SETUP_SMTP_JS,
            "bob",
            setup.logins["bob"],
            account["key"],
            setup.smtp_port,
            setup.security,
            cert_b64,
            SHARED_ADDRESS,
        ),
    )
    result["alice_claim"] = alice_claims(setup)
    print(f"  alice claimed the other mail through the gateway: {result['alice_claim']}", flush=True)
    steps.run("bob_inbox", lambda: tb.run_async(_OPEN_FOLDER_JS, "bob", "INBOX", 2, 90000))
    # 1. A reply to the mail alice claimed: refused; bob discards it.
    steps.run(
        "compose_claimed",
        lambda: tb.run_async(
            _OPEN_REPLY_JS, "bob", setup.claimed.strip("<>"), "Ich kümmere mich darum. -- bob\n", 60000
        ),
    )
    result["send_claimed"] = tb.run_async(_SEND_JS, 90000, retry=False)
    print(f"  send (claimed): {result['send_claimed']}", flush=True)
    screenshot(display, work / "thunderbird-bob-reply-claimed.png")
    steps.sweep("send")
    steps.run("discard", lambda: tb.run_async(_DISCARD_COMPOSE_JS))
    # 2. A reply to the mail alice already answered: refused, then sent again (the override).
    steps.run(
        "compose",
        lambda: tb.run_async(
            _OPEN_REPLY_JS, "bob", setup.original.strip("<>"), "Wir schicken sie heute los. -- bob\n", 60000
        ),
    )
    screenshot(display, work / "thunderbird-bob-reply-compose.png")
    result["send"] = tb.run_async(_SEND_JS, 90000, retry=False)
    print(f"  send: {result['send']}", flush=True)
    screenshot(display, work / "thunderbird-bob-reply-refused.png")
    result["delivered_after_refusal"] = sorted(set(replies_at_customer(setup)) - {result["alice_reply"]})
    steps.sweep("send")  # the user's OK on the error dialog
    time.sleep(2)
    result["send_again"] = tb.run_async(_SEND_JS, 90000, retry=False)
    print(f"  send again: {result['send_again']}", flush=True)
    screenshot(display, work / "thunderbird-bob-reply-sent.png")
    steps.sweep("send again")
    with contextlib.suppress(TimeoutError):
        wait_for(
            "bob's reply at the customer",
            lambda: len(set(replies_at_customer(setup)) - {result["alice_reply"]}) >= 1,
            60,
        )
    time.sleep(3)  # a second copy would have arrived by now
    result["delivered"] = {
        mid: headers for mid, headers in replies_at_customer(setup).items() if mid != result["alice_reply"]
    }
    result["original_flags"] = original_flags_at_hoster(setup)
    result["claimed_delivered"] = sorted(replies_at_customer(setup, setup.claimed))
    result["version"] = thunderbird_version(tb)
    tb.quit()
    proc.wait(60)
    audit = subprocess.run(
        [IMAPGATE, "audit", "--config", str(setup.config), "--since", "1h", "--limit", "30"],
        capture_output=True,
        text=True,
        check=False,
    )
    (work / "guard-audit.txt").write_text(audit.stdout + audit.stderr)
    return result


def guard_failures(guard: dict[str, Any]) -> list[str]:
    failures: list[str] = []
    claimed = guard.get("send_claimed") or {}
    told = " ".join(d.get("text", "") for d in claimed.get("dialogs", []))
    if claimed.get("outcome") != "alert" or "alice is handling this mail" not in told:
        failures.append(f"the reply to alice's claimed mail was not refused with her claim named: {claimed}")
    if guard.get("claimed_delivered"):
        failures.append(
            f"the refused reply to the claimed mail reached the customer: {guard['claimed_delivered']}"
        )
    send, again = guard.get("send") or {}, guard.get("send_again") or {}
    shown = " ".join(d.get("text", "") for d in send.get("dialogs", []))
    if send.get("outcome") != "alert" or "alice already replied" not in shown:
        failures.append(f"the first send was not refused with alice's reply named: {send}")
    if not send.get("composeOpen"):
        failures.append("the compose window closed after the refusal (the reply would be lost)")
    if guard.get("delivered_after_refusal"):
        failures.append(f"the refused reply reached the customer: {guard['delivered_after_refusal']}")
    if again.get("outcome") != "sent":
        failures.append(f"sending again (the override) did not go out: {again}")
    thunderbird = [
        m for m, h in guard.get("delivered", {}).items() if "Thunderbird" in h.get("User-Agent", "")
    ]
    if len(thunderbird) != 1:
        failures.append(
            f"bob's reply reached the customer {len(thunderbird)} times: {guard.get('delivered')}"
        )
    if "\\Answered" not in guard.get("original_flags", ""):
        failures.append(f"the original is not \\Answered at the hoster: {guard.get('original_flags')}")
    for dialog in guard.get("startup_dialogs", []):
        failures.append(f"bob's Thunderbird held up its start with a modal {dialog['window']!r}")
    for dialog in guard.get("dialogs", []):
        if dialog["after"] not in ("send", "send again"):
            failures.append(f"bob's Thunderbird showed an alert after {dialog['after']}: {dialog['text']!r}")
    return failures


def check_demo(procs: Processes, work: Path, display: str, port: int, timeouts: Timeouts) -> list[str]:
    """Thunderbird (alice, carol: read state, star, claims) and neomutt (bob) against the demo,
    checked from a tshark capture of the gateway port. Returns what went wrong."""
    failures: list[str] = []
    logins = start_demo(procs, work, port)
    capture = work / "capture.pcapng"
    tshark_log = work / "tshark.log"
    tshark = procs.start(["tshark", "-i", "lo", "-f", f"tcp port {port}", "-w", str(capture)], tshark_log)
    wait_for("tshark", lambda: "Capture started" in tshark_log.read_text(errors="replace"))

    before = {user: seen_uids(port, user, pw) for user, pw in logins.items()}
    flagged_before = seen_uids(port, "bob", logins["bob"], key="FLAGGED")
    print("Thunderbird (alice, carol) against the demo gateway:", flush=True)
    tb = run_thunderbird(procs, work, display, port, logins, timeouts)
    after_tb = {user: seen_uids(port, user, pw) for user, pw in logins.items()}
    print(f"Thunderbird {tb['version']} done")
    failures.extend(claim_failures(tb["claims"]))
    for dialog in tb["startup_dialogs"]:
        failures.append(
            f"Thunderbird held up its start with a modal {dialog['window']!r} ({dialog['screenshot']})"
        )
    for dialog in tb["dialogs"]:
        if "is handling this message" not in dialog["text"]:
            failures.append(f"Thunderbird showed an alert after {dialog['after']}: {dialog['text']!r}")
    alice_uid, carol_uid = int(tb["alice_read"]["uid"]), int(tb["carol_read"]["uid"])
    marked, starred = int(tb["alice_marked"]["read"]), int(tb["alice_marked"]["starred"])
    expect = {
        # The claimed message is selected for the screenshot, which marks it read.
        "alice": before["alice"] | {alice_uid, marked, int(tb["claims"]["uid"])},
        "bob": before["bob"],
        "carol": before["carol"] | {carol_uid},
    }
    for user, uids in expect.items():
        if after_tb[user] != uids:
            failures.append(
                f"after Thunderbird, {user}'s \\Seen in INBOX: got "
                f"{sorted(after_tb[user] ^ before[user])} changed, expected "
                f"{sorted(uids ^ before[user])}"
            )

    # Stars are shared: alice's must show for bob.
    flagged = seen_uids(port, "bob", logins["bob"], key="FLAGGED")
    if flagged != flagged_before | {starred}:
        failures.append(
            f"alice starred UID {starred}; bob's \\Flagged changed by {sorted(flagged ^ flagged_before)}"
        )

    alice = imap_login(port, "alice", logins["alice"])
    try:
        alice.select("INBOX")
        _status, data = alice.uid("SEARCH", "UNKEYWORD", "$Claimed")
        mutt_claimed = max(int(u) for u in data[0].split())
        status, data = alice.uid("STORE", str(mutt_claimed), "+FLAGS", "($Claimed)")
        if status != "OK":
            failures.append(f"alice's claim of UID {mutt_claimed} for neomutt: {status} {data}")
    finally:
        alice.logout()
    neomutt = run_neomutt(work, port, logins["bob"])
    row = re.search(r"(?m)^.*\$claimed_alice.*$", neomutt["claimed"])
    print(f"neomutt: alice's claim in the index: {row.group(0).strip() if row else '?'!r}")
    status_line = [ln for ln in neomutt["synced"].splitlines() if ln.strip()][-1]
    print(f"neomutt: after d and $ on it, the status line says {status_line.strip()!r}")
    alice = imap_login(port, "alice", logins["alice"])
    try:
        alice.select("INBOX", readonly=True)
        _status, data = alice.uid("FETCH", str(mutt_claimed), "(FLAGS)")
        flags = b" ".join(d for d in data if isinstance(d, bytes)).decode()
    finally:
        alice.logout()
    if "$claimed_alice" not in flags.lower() or "\\Deleted" in flags:
        failures.append(f"neomutt's delete of alice's claimed UID {mutt_claimed}: now {flags!r}")
    else:
        print(f"neomutt: the message stayed, claimed, not \\Deleted ({flags})")
    after_mutt = {user: seen_uids(port, user, pw) for user, pw in logins.items()}
    subject = re.search(r"(?m)^Subject: (.*)$", neomutt["pager"])
    bob_new = after_mutt["bob"] - after_tb["bob"]
    print(
        f"neomutt: read {subject.group(1).strip() if subject else '?'!r}, "
        f"bob's new \\Seen UIDs {sorted(bob_new)}"
    )
    if len(bob_new) != 1:
        failures.append(f"neomutt: expected one new \\Seen for bob, got {sorted(bob_new)}")
    for user in ("alice", "carol"):
        if after_mutt[user] != after_tb[user]:
            failures.append(
                f"bob's read in neomutt changed {user}'s \\Seen: {sorted(after_mutt[user] ^ after_tb[user])}"
            )

    time.sleep(1)
    procs.stop(tshark, signal.SIGINT)  # SIGINT: tshark finishes the file
    streams = [
        s for s in imap_capture.analyse(str(capture), port) if not s.client.startswith("python imaplib")
    ]
    (work / "transcript.txt").write_text(imap_capture.transcript(streams))
    print("\ncapture (the script's own checking sessions left out):")
    print(imap_capture.summary(streams))
    # The one refusal asked for: Thunderbird's move of the message bob claimed.
    problems = [p for p in imap_capture.problems(streams) if "[INUSE]" not in p]
    print("NO/BAD: " + ("none" if not problems else "\n  " + "\n  ".join(problems)))
    failures.extend(problems)
    seen = {(s.client.split()[0], c.name) for s in streams for c in s.commands}
    for client, commands in (
        # No LOGOUT: Thunderbird drops its connections when it quits.
        ("Thunderbird", ("ID", "NAMESPACE", "LIST", "SELECT", "UID FETCH", "UID STORE", "IDLE")),
        ("mutt/neomutt", ("LIST", "SELECT", "FETCH", "STORE", "LOGOUT")),
    ):
        missing = [c for c in commands if (client, c) not in seen and (client, "UID " + c) not in seen]
        if missing:
            failures.append(f"{client} never sent {missing} (see transcript.txt)")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    parser.add_argument("--display", default=":97", help="Xvfb display to use")
    default = Timeouts()
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=default.start,
        help="seconds for Thunderbird's Marionette port to open (default %(default)s)",
    )
    parser.add_argument(
        "--session-timeout",
        type=float,
        default=default.session,
        help="seconds per attempt for Marionette's WebDriver:NewSession (default %(default)s)",
    )
    parser.add_argument(
        "--session-attempts",
        type=int,
        default=default.session_attempts,
        help="NewSession attempts, each on a new connection (default %(default)s)",
    )
    parser.add_argument(
        "--command-timeout",
        type=float,
        default=default.command,
        help="seconds for any later Marionette command (default %(default)s)",
    )
    parser.add_argument(
        "--only", choices=("all", "demo", "guard"), default="all", help="run only one part (default: both)"
    )
    parser.add_argument(
        "--smtp-security",
        choices=("starttls", "plain"),
        default="starttls",
        help="Thunderbird to the gateway's submission port: STARTTLS with the test certificate "
        "accepted as a security exception (default), or no TLS (allow_plaintext)",
    )
    args = parser.parse_args()
    timeouts = Timeouts(args.start_timeout, args.session_timeout, args.session_attempts, args.command_timeout)
    for tool in ("thunderbird", "Xvfb", "tshark", "neomutt", "tmux", "import", "xdotool"):
        if shutil.which(tool) is None:
            print(f"missing {tool}: run scripts/check_clients.sh (installs them)", file=sys.stderr)
            return 2
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="imapgate-clients-"))
    work.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    print(f"work directory: {work}")

    procs = Processes([])
    failures: list[str] = []
    try:
        procs.start(
            ["Xvfb", args.display, "-screen", "0", "1400x900x24", "-nolisten", "tcp"], work / "xvfb.log"
        )
        if args.only in ("all", "demo"):
            t0 = time.monotonic()
            mark = len(procs.started)
            try:
                failures.extend(check_demo(procs, work, args.display, port, timeouts))
            except Exception as exc:  # the guard check still runs; the failure is reported
                failures.append(f"the demo check stopped: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            finally:
                procs.stop_all(mark)  # the demo and tshark; Xvfb stays
            print(f"demo check: {time.monotonic() - t0:.0f} s", flush=True)
        if args.only in ("all", "guard"):
            t0 = time.monotonic()
            print(
                "\nThunderbird (bob) sending through the gateway's submission port (reply guard):", flush=True
            )
            mark = len(procs.started)
            with contextlib.ExitStack() as stack:
                try:
                    setup = start_guard_setup(procs, stack, work, args.smtp_security)
                    guard = run_reply_guard(procs, work, args.display, setup, timeouts)
                    failures.extend(guard_failures(guard))
                    print(f"  delivered to the customer: {guard['delivered']}")
                    print(f"  original at the hoster: {guard['original_flags']}")
                except Exception as exc:
                    failures.append(f"the reply-guard check stopped: {type(exc).__name__}: {exc}")
                    traceback.print_exc()
                finally:
                    procs.stop_all(mark)  # the gateway before its Postfix and Dovecot
            print(f"reply-guard check: {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        procs.stop_all()

    print(f"\nartefacts in {work}: transcript.txt (redacted), thunderbird-*.png, neomutt-*.txt, guard-*")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    done = {
        "all": "every client command answered OK; read state private per user; claims and reply guard shown",
        "demo": "every client command answered OK; read state private per user; claims shown",
        "guard": "both replies refused with the text shown; the override sent once",
    }
    print(f"OK: {done[args.only]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
