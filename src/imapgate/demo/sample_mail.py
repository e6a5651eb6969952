"""Deterministic, realistic sample mail for a small European company's shared ``info@`` mailbox.

:func:`generate_mailbox` builds a few hundred messages (at ``scale=1.0``) for the team mailbox of
the fictitious *Kühne & Brandt Medientechnik GmbH*: support threads with customers from all over
Europe (replies with ``Re:``, quoted text, ``In-Reply-To``/``References``), invoices with PDF
attachments, a website-relaunch project with an agency (HTML mails, PNG mock-ups, CSV sitemaps),
office chatter, newsletters, forwarded messages, drafts, spam and trash.  Subjects, names,
bodies and attachment file names use umlauts and other non-ASCII text, encoded as real mail
clients do (RFC 2047 headers, RFC 2231 file names, quoted-printable / base64 / 8bit bodies).
Everything is built with the stdlib :mod:`email` package, with CRLF line endings.

:func:`generate_bulk` makes many small messages quickly from byte templates (100,000 in a couple
of seconds) for large-folder benchmarks.

The same seed always gives byte-identical output (MIME boundaries and Message-IDs are derived
from the seed, not from the clock or the global random state).  This module is part of the
standalone demo/test helper layer: it imports nothing else from imapgate.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime

__all__ = [
    "COMPANY",
    "DOMAIN",
    "FOLDERS",
    "MAILBOX_ADDRESS",
    "TEAM",
    "SampleMessage",
    "generate_bulk",
    "generate_mailbox",
]

COMPANY = "Kühne & Brandt Medientechnik GmbH"
DOMAIN = "kuehne-brandt.de"
MAILBOX_ADDRESS = f"info@{DOMAIN}"

#: Folders of the generated mailbox, in display order ("/" is the hierarchy separator).
FOLDERS: tuple[str, ...] = (
    "INBOX",
    "Support",
    "Rechnungen",
    "Projekte",
    "Projekte/Website-Relaunch",
    "Büro",
    "Archive",
    "Sent",
    "Drafts",
    "Trash",
    "Junk",
)


@dataclass(frozen=True, slots=True)
class SampleMessage:
    """One message as stored upstream: RFC 5322 bytes (CRLF), IMAP flags and INTERNALDATE."""

    raw: bytes
    flags: tuple[str, ...] = ()
    internal_date: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))

    def parse(self) -> EmailMessage:
        """The message parsed with the stdlib :mod:`email` package (modern policy)."""
        msg = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(msg, EmailMessage)
        return msg


# --------------------------------------------------------------------------- people

@dataclass(frozen=True, slots=True)
class _Person:
    name: str
    addr: str
    lang: str = "de"

    @property
    def address(self) -> Address:
        return Address(self.name, addr_spec=self.addr)

    @property
    def first(self) -> str:
        return self.name.split()[0]


_INFO = _Person("Kühne & Brandt – Info", MAILBOX_ADDRESS)

#: The team that shares the info@ mailbox.
TEAM: tuple[_Person, ...] = (
    _Person("Anna Schäfer", f"anna.schaefer@{DOMAIN}"),
    _Person("Jürgen Weiß", f"juergen.weiss@{DOMAIN}"),
    _Person("Zoë Lefèvre", f"zoe.lefevre@{DOMAIN}"),
    _Person("Łukasz Nowak", f"lukasz.nowak@{DOMAIN}"),
)

_CUSTOMERS: tuple[_Person, ...] = (
    _Person("Élodie Dubois", "e.dubois@atelier-lumiere.fr", "fr"),
    _Person("Björn Andersson", "bjorn@nordljus.se", "en"),
    _Person("José García Núñez", "jgarcia@hosteleria-sol.es", "es"),
    _Person("Małgorzata Wiśniewska", "m.wisniewska@krakow-druk.pl", "en"),
    _Person("Günther Öztürk", "g.oeztuerk@oeztuerk-bau.de"),
    _Person("Søren Østergaard", "soeren@havnegade.dk", "en"),
    _Person("Chiara Bianchi", "chiara.bianchi@studio-bianchi.it", "en"),
    _Person("Dr. Friederike von Hößlin", "f.hoesslin@praxis-hoesslin.de"),
    _Person("Tomáš Dvořák", "tomas.dvorak@pivovar-dvorak.cz", "en"),
    _Person("Ana Luísa Gonçalves", "analuisa@lisboa-design.pt", "en"),
    _Person("Ιωάννης Παπαδόπουλος", "ioannis@athens-tours.gr", "en"),
    _Person("Heike Müller-Lüdenscheidt", "h.mueller@stadtbibliothek-musterstadt.de"),
    _Person("Klaus Bäumer", "kb@baeumer-elektro.de"),
    _Person("Françoise Roux-Lefèbvre", "f.roux@hotel-les-tilleuls.fr", "fr"),
)

_SUPPLIERS: tuple[tuple[_Person, str], ...] = (
    (_Person("Büromarkt Böttcher GmbH", "rechnung@bueromarkt-boettcher.de"), "Büromaterial"),
    (_Person("HostEuropa Webhosting", "billing@hosteuropa.example"), "Webhosting Paket „Business XL“"),
    (_Person("Druckerei Grünwald e.K.", "buchhaltung@druckerei-gruenwald.de"), "Flyer DIN lang, 5.000 Stück"),
    (_Person("Stadtwerke Musterstadt", "kundenservice@stadtwerke-musterstadt.de"), "Strom Abschlag"),
    (_Person("Brückner & Partner Steuerberatung", "kanzlei@brueckner-partner.de"), "Lohnbuchhaltung"),
    (_Person("Kaffee Rösterei Süß", "shop@roesterei-suess.de"), "Kaffeebohnen „Espresso Milano“ 6 kg"),
)

_AGENCY: tuple[_Person, ...] = (
    _Person("Lena Fuchs", "lena.fuchs@pixelwerk-agentur.de"),
    _Person("Mehmet Yılmaz", "mehmet.yilmaz@pixelwerk-agentur.de"),
)

_SPAMMERS: tuple[_Person, ...] = (
    _Person("Ρrize Dept.", "winner@lucky-draw.example", "en"),
    _Person("Sicherheitsteam", "security@konto-verifizierung.example"),
    _Person("SEO Experts", "growth@seo-rank-now.example", "en"),
)

# --------------------------------------------------------------------------- texts

_SUPPORT_TOPICS: dict[str, tuple[tuple[str, str], ...]] = {
    "de": (
        ("Frage zu Ihrer Rechnung Nr. {n}",
         "auf Ihrer Rechnung Nr. {n} ist die Position „Einrichtungspauschale“ doppelt aufgeführt.\n"
         "Könnten Sie das bitte prüfen und uns eine korrigierte Rechnung schicken?"),
        ("Störung: Beamer im Konferenzraum zeigt kein Bild",
         "seit gestern zeigt der Beamer im großen Besprechungsraum nur noch „Kein Signal“.\n"
         "Wir haben Kabel und Eingänge geprüft. Können Sie kurzfristig jemanden vorbeischicken?"),
        ("Anfrage: Angebot für Videokonferenzsystem",
         "wir möchten zwei Räume mit Videokonferenztechnik ausstatten (je 8–12 Personen).\n"
         "Bitte schicken Sie uns ein Angebot inkl. Installation und Schulung."),
        ("Reklamation: Gerät defekt (Seriennr. {sn})",
         "das am {d} gelieferte Gerät (Seriennummer {sn}) schaltet sich nach ca. 10 Minuten ab.\n"
         "Wir bitten um Austausch oder Reparatur im Rahmen der Gewährleistung."),
        ("Änderung unserer Rechnungsadresse",
         "ab dem 1. des nächsten Monats lautet unsere Rechnungsadresse:\n"
         "Öztürk Bau GmbH, Königstraße 17, 70173 Stuttgart.\nBitte passen Sie Ihre Stammdaten an."),
        ("Zugangsdaten für das Kundenportal vergessen",
         "ich komme nicht mehr in das Kundenportal – die Funktion „Passwort vergessen“\n"
         "schickt keine E-Mail. "
         "Können Sie mein Konto bitte zurücksetzen?"),
        ("Termin für Vor-Ort-Service nächste Woche?",
         "für die jährliche Wartung der Medientechnik würden wir gern einen Termin vereinbaren.\n"
         "Passt Ihnen Dienstag oder Donnerstag Vormittag?"),
    ),
    "en": (
        ("Question about warranty extension for order {n}",
         "we bought two displays from you last year (order {n}). Is it possible to extend the warranty\n"
         "to five years, and what would that cost?"),
        ("Delivery delayed – order {n}",
         "our order {n} was supposed to arrive on {d}, but the tracking still says \"in preparation\".\n"
         "Could you let us know the new delivery date?"),
        ("Invoice in English needed",
         "our accounting department needs the invoice for order {n} in English, with our VAT ID.\n"
         "Could you send a new copy?"),
        ("Firmware update for the control panel?",
         "is there a firmware update for the touch control panel? The current version freezes\n"
         "now and then when switching inputs."),
    ),
    "fr": (
        ("Problème de connexion au portail client",
         "depuis lundi, je n'arrive plus à me connecter au portail client : « identifiants invalides ».\n"
         "Pourriez-vous vérifier mon compte, s'il vous plaît ?"),
        ("Demande de devis – équipement de la salle de réunion",
         "nous souhaitons équiper notre salle de réunion d'un écran interactif et d'une caméra.\n"
         "Pourriez-vous nous envoyer un devis détaillé ?"),
    ),
    "es": (
        ("Pedido {n}: ¿cuándo llega?",
         "hicimos el pedido {n} hace dos semanas y todavía no hemos recibido nada.\n"
         "¿Podrían indicarnos la fecha de entrega?"),
        ("Consulta sobre la garantía del proyector",
         "el proyector que compramos hace ocho meses hace un ruido extraño.\n"
         "¿Está cubierto por la garantía?"),
    ),
}

_GREETING = {
    "de": "Sehr geehrte Damen und Herren,",
    "en": "Dear Kühne & Brandt team,",
    "fr": "Madame, Monsieur,",
    "es": "Estimados señores:",
}
_CLOSING = {
    "de": "Mit freundlichen Grüßen",
    "en": "Kind regards",
    "fr": "Cordialement,",
    "es": "Saludos cordiales,",
}
_REPLY_BODIES = {
    "de": (
        "vielen Dank für Ihre Nachricht. Wir haben das geprüft und melden uns bis spätestens\n"
        "übermorgen mit einer Lösung. Ihr Vorgang hat die Nummer KB-{t}.",
        "danke für den Hinweis – da ist uns ein Fehler unterlaufen. Die Korrektur ist unterwegs.",
        "unser Techniker Herr Weiß kommt am Donnerstag zwischen 9 und 11 Uhr bei Ihnen vorbei.\n"
        "Bitte sorgen Sie dafür, dass der Raum zugänglich ist.",
        "gern schicken wir Ihnen ein Angebot. Vorab zwei Fragen: Wie groß sind die Räume, und gibt es\n"
        "bereits Netzwerkanschlüsse an der Stirnwand?",
    ),
    "en": (
        "thank you for your message. We have looked into it and will get back to you with a solution\n"
        "within two working days. Your ticket number is KB-{t}.",
        "sorry for the trouble – the shipment left our warehouse today, you should have it on Friday.",
        "yes, that's possible. I've attached nothing yet, but our offer will follow tomorrow.",
    ),
    "fr": (
        "merci pour votre message. Nous avons réinitialisé votre accès ; vous allez recevoir\n"
        "un e-mail avec un lien de connexion. Numéro de dossier : KB-{t}.",
    ),
    "es": (
        "muchas gracias por su mensaje. El pedido sale hoy de nuestro almacén; lo recibirán\n"
        "en un plazo de tres días laborables. Número de incidencia: KB-{t}.",
    ),
}
_FOLLOW_UPS = {
    "de": ("vielen Dank, das hat geklappt!",
           "leider besteht das Problem weiterhin. Können Sie nochmal schauen?"),
    "en": ("thanks a lot, that solved it!", "unfortunately the problem is still there. Any other ideas?"),
    "fr": ("merci beaucoup, tout fonctionne à nouveau !",),
    "es": ("¡muchas gracias, ya funciona!",),
}

_OFFICE_SUBJECTS = (
    "Urlaubsplanung Sommer 2024 – bitte bis Freitag eintragen",
    "Kaffeemaschine entkalkt ☕",
    "Schlüsselübergabe Büro Erdgeschoss",
    "Teammeeting verschoben auf Donnerstag 14:00",
    "Neue Öffnungszeiten über Pfingsten",
    "Geburtstagskarte für Jürgen – wer unterschreibt noch?",
    "WLAN-Passwort geändert",
    "Einladung: Sommerfest am Rheinufer 🎉",
)

_PROJECT_SUBJECTS = (
    "Website-Relaunch: Entwürfe Startseite (Runde {r})",
    "Sitemap und Seitenstruktur – Abstimmung",
    "Bildrechte für Referenzprojekte",
    "Texte „Über uns“ – Korrekturen",
    "Go-Live-Termin & Umzug der Domain",
    "Farbpalette und Schriften – finale Auswahl",
    "Barrierefreiheit: Prüfbericht",
)

_NEWSLETTERS = (
    (_Person("Messe Frankfurt Newsletter", "newsletter@messe-news.example"),
     "Prolight + Sound 2024: Ihr Ticket-Gutschein wartet"),
    (_Person("IHK Rhein-Neckar", "info@ihk-news.example"), "Neue Förderprogramme für Digitalisierung"),
    (_Person("Fachverband Veranstaltungstechnik", "presse@fachverband-vt.example"),
     "Newsletter Mai: Änderungen der DGUV-Vorschriften"),
)

_SPAM_SUBJECTS = (
    "Herzlichen Glückwunsch! Sie haben gewonnen!!!",
    "Ihr Konto wurde gesperrt – sofort bestätigen",
    "Get your website on page #1 of Google – guaranteed",
    "Ｒｅｃｈｎｕｎｇ offen – letzte Mahnung",
)

_DRAFT_SUBJECTS = (
    "Angebot Videokonferenzsystem – Entwurf",
    "Re: Bildrechte für Referenzprojekte",
    "Pressemitteilung: 25 Jahre Kühne & Brandt",
    "Kündigung Wartungsvertrag Kopierer",
    "Antwort an Frau Wiśniewska (noch prüfen!)",
)

_BERLIN_WINTER = timezone(timedelta(hours=1))
_BERLIN_SUMMER = timezone(timedelta(hours=2))


def _berlin(dt_utc: datetime) -> datetime:
    """Central European time, with the 2023/2024 DST switch dates (no tzdata dependency)."""
    summer = (datetime(2023, 3, 26, 1, tzinfo=UTC) <= dt_utc < datetime(2023, 10, 29, 1, tzinfo=UTC)
              or datetime(2024, 3, 31, 1, tzinfo=UTC) <= dt_utc < datetime(2024, 10, 27, 1, tzinfo=UTC))
    return dt_utc.astimezone(_BERLIN_SUMMER if summer else _BERLIN_WINTER)


# --------------------------------------------------------------------------- attachments

def _make_pdf(rng: random.Random, lines: Sequence[str]) -> bytes:
    """A small but valid one-page PDF showing ``lines`` (Latin-1 text, Helvetica)."""
    text_ops = ["BT", "/F1 11 Tf", "14 TL", "56 780 Td"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text_ops.append(f"({escaped}) '")
    text_ops.append("ET")
    stream = "\n".join(text_ops).encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    doc_id = b"%032x" % rng.getrandbits(128)
    out += (b"trailer\n<< /Size %d /Root 1 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, doc_id, doc_id, xref))
    return bytes(out)


def _make_png(rng: random.Random, width: int = 48, height: int = 32) -> bytes:
    """A small valid RGB PNG: a gradient with a random tint (a "mock-up thumbnail")."""
    tint = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type "none"
        for x in range(width):
            rows += bytes(((tint[0] + 4 * x) % 256, (tint[1] + 6 * y) % 256, (tint[2] + 2 * (x + y)) % 256))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
            + chunk(b"IEND", b""))


def _make_csv(rows: Sequence[Sequence[str]]) -> bytes:
    # German Excel convention: semicolons, CRLF, UTF-8 with BOM.
    return "\ufeff".encode() + "".join(";".join(row) + "\r\n" for row in rows).encode("utf-8")


def _make_ics(rng: random.Random, summary: str, start: datetime) -> bytes:
    uid = f"{rng.getrandbits(64):016x}@{DOMAIN}"
    stamp = start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    end = (start + timedelta(hours=1)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//imapgate demo//DE", "METHOD:REQUEST",
             "BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{stamp}", f"DTSTART:{stamp}", f"DTEND:{end}",
             f"SUMMARY:{summary}", "LOCATION:Besprechungsraum „Rhein“", "END:VEVENT", "END:VCALENDAR"]
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


# --------------------------------------------------------------------------- generator

class _Builder:
    """Holds the seeded RNG and the folders being filled; one instance per generate_mailbox call."""

    def __init__(self, seed: int, scale: float) -> None:
        self.rng = random.Random(seed)
        self.scale = scale
        self.folders: dict[str, list[SampleMessage]] = {name: [] for name in FOLDERS}
        self.start = datetime(2024, 1, 8, 7, 0, tzinfo=UTC)
        self.end = datetime(2024, 6, 28, 16, 0, tzinfo=UTC)
        self.archive_start = datetime(2023, 7, 3, 7, 0, tzinfo=UTC)
        self.archive_end = datetime(2023, 12, 22, 16, 0, tzinfo=UTC)
        self._boundary_counter = 0
        # Flags on already-built messages that later events change (\Answered, $Forwarded).
        self._extra_flags: dict[bytes, set[str]] = {}

    # ---- helpers

    def count(self, base: int) -> int:
        return max(1, round(base * self.scale))

    def msgid(self, domain: str = DOMAIN) -> str:
        return f"<{self.rng.getrandbits(64):016x}.{self.rng.getrandbits(32):08x}@{domain}>"

    def when(self, start: datetime, end: datetime) -> datetime:
        """A working-hours moment (Mon–Fri, 7–18 local) between start and end, in Berlin time."""
        span = int((end - start).total_seconds())
        for _ in range(50):
            moment = _berlin(start + timedelta(seconds=self.rng.randrange(span)))
            if moment.weekday() < 5 and 7 <= moment.hour < 18:
                return moment
        return _berlin(start)

    def later(self, moment: datetime, min_minutes: int = 20, max_minutes: int = 60 * 48) -> datetime:
        return moment + timedelta(minutes=self.rng.randrange(min_minutes, max_minutes))

    def body_cte(self, text: str) -> str:
        if text.isascii():
            return "7bit"
        return self.rng.choices(("quoted-printable", "base64", "8bit"), weights=(6, 3, 2))[0]

    def new_message(
        self,
        sender: _Person,
        to: Sequence[_Person],
        subject: str,
        date: datetime,
        *,
        cc: Sequence[_Person] = (),
        message_id: str | None = None,
        parent: EmailMessage | None = None,
        user_agent: str | None = None,
    ) -> EmailMessage:
        msg = EmailMessage(policy=policy.SMTP)
        msg["From"] = sender.address
        msg["To"] = [p.address for p in to]
        if cc:
            msg["Cc"] = [p.address for p in cc]
        msg["Subject"] = subject
        msg["Date"] = format_datetime(date)
        msg["Message-ID"] = message_id or self.msgid(sender.addr.split("@")[1])
        if parent is not None:
            parent_id = str(parent["Message-ID"])
            refs = str(parent.get("References", "")).split()
            msg["In-Reply-To"] = parent_id
            msg["References"] = " ".join([*refs, parent_id])
        msg["MIME-Version"] = "1.0"
        if user_agent is None:
            user_agent = self.rng.choice((
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.10.1",
                "Microsoft Outlook 16.0", "Apple Mail (2.3774.500.171.1.1)", "K-9 Mail for Android",
                "Roundcube Webmail/1.6.6",
            ))
        if user_agent.startswith(("Microsoft", "Apple")):
            msg["X-Mailer"] = user_agent
        else:
            msg["User-Agent"] = user_agent
        return msg

    def set_text(self, msg: EmailMessage, text: str, *, html: str | None = None) -> None:
        msg.set_content(text, subtype="plain", charset="utf-8", cte=self.body_cte(text))
        if html is not None:
            msg.add_alternative(html, subtype="html", charset="utf-8", cte=self.body_cte(html))

    def finish(
        self,
        folder: str,
        msg: EmailMessage,
        flags: Sequence[str],
        delay_seconds: int | None = None,
    ) -> SampleMessage:
        """Fix the MIME boundaries (the email package would pick random ones), serialise, file it."""
        self._tidy_parts(msg, top=True)
        raw = msg.as_bytes(policy=policy.SMTP)
        date = msg["Date"].datetime
        if delay_seconds is None:
            delay_seconds = self.rng.randrange(2, 180)
        internal = (date + timedelta(seconds=delay_seconds)).replace(microsecond=0)
        sample = SampleMessage(raw=raw, flags=tuple(flags), internal_date=internal)
        self.folders[folder].append(sample)
        return sample

    def _tidy_parts(self, part: EmailMessage, *, top: bool) -> None:
        # The email package copies MIME-Version into body parts it creates; real clients put it
        # only on the message itself (and on an attached message/rfc822).
        if not top:
            del part["MIME-Version"]
        if part.get_content_maintype() == "multipart":
            self._boundary_counter += 1
            part.set_boundary(f"----=_Part_{self._boundary_counter}_{self.rng.getrandbits(48):012x}")
            for child in part.iter_parts():
                assert isinstance(child, EmailMessage)
                self._tidy_parts(child, top=False)
        elif part.get_content_type() == "message/rfc822":
            inner = part.get_payload(0)
            assert isinstance(inner, EmailMessage)
            self._tidy_parts(inner, top=True)

    def received_flags(self, date: datetime, *, answered: bool = False) -> list[str]:
        flags: list[str] = []
        recent = date > self.end - timedelta(days=10)
        if self.rng.random() < (0.45 if recent else 0.93):
            flags.append("\\Seen")
        if answered:
            flags.append("\\Answered")
        if self.rng.random() < 0.08:
            flags.append("\\Flagged")
        if self.rng.random() < 0.05:
            flags.append("$Label1")
        if self.rng.random() < 0.03:
            flags.append("$Forwarded")
        return flags

    @staticmethod
    def quote(msg: EmailMessage, person: _Person, lang: str) -> str:
        body = msg.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        date = msg["Date"].datetime
        if lang == "de":
            intro = f"Am {date:%d.%m.%Y} um {date:%H:%M} schrieb {person.name} <{person.addr}>:"
        elif lang == "fr":
            intro = f"Le {date:%d/%m/%Y} à {date:%H:%M}, {person.name} <{person.addr}> a écrit :"
        elif lang == "es":
            intro = f"El {date:%d/%m/%Y} a las {date:%H:%M}, {person.name} <{person.addr}> escribió:"
        else:
            intro = f"On {date:%d %b %Y}, at {date:%H:%M}, {person.name} <{person.addr}> wrote:"
        quoted = "\n".join(("> " + line) if line else ">" for line in text.rstrip("\n").split("\n"))
        return f"{intro}\n{quoted}\n"

    @staticmethod
    def signature(person: _Person) -> str:
        return (f"-- \n{person.name}\n{COMPANY}\nRheinuferstraße 12 · 68159 Mannheim\n"
                f"Tel. +49 621 123 456-0 · {MAILBOX_ADDRESS}\n")

    # ---- content kinds

    def support_threads(self, folder: str, n: int, start: datetime, end: datetime) -> None:
        for _ in range(n):
            customer = self.rng.choice(_CUSTOMERS)
            lang = customer.lang
            subject_t, body_t = self.rng.choice(_SUPPORT_TOPICS[lang])
            params = {"n": str(self.rng.randrange(20_000, 29_999)),
                      "sn": f"KB{self.rng.randrange(10**7):07d}",
                      "d": f"{self.rng.randrange(1, 28):02d}.{self.rng.randrange(1, 12):02d}.2024",
                      "t": str(self.rng.randrange(1000, 9999))}
            subject = subject_t.format(**params)
            date = self.when(start, end)
            first = self.new_message(customer, [_INFO], subject, date)
            text = f"{_GREETING[lang]}\n\n{body_t.format(**params)}\n\n{_CLOSING[lang]}\n{customer.name}\n"
            if self.rng.random() < 0.3:
                body_html = body_t.format(**params).replace("\n", "<br>")
                html = (f"<html><body><p>{_GREETING[lang]}</p><p>{body_html}</p>"
                        f"<p>{_CLOSING[lang]}<br><b>{customer.name}</b></p></body></html>")
                self.set_text(first, text, html=html)
            else:
                self.set_text(first, text)
            if self.rng.random() < 0.15:
                first.add_attachment(_make_png(self.rng, 40, 30), maintype="image", subtype="png",
                                     filename=f"Foto_{self.rng.randrange(1000, 9999)}.png")
            replied = self.rng.random() < 0.75 and date < end - timedelta(days=2)
            first_flags = self.received_flags(date, answered=replied)
            self.finish(folder, first, first_flags)
            if not replied:
                continue
            agent = self.rng.choice(TEAM)
            reply_date = self.later(date, 15, 60 * 30)
            # Replies go out from the shared address, with the agent's name (as Outlook/Thunderbird
            # identities for info@ are usually set up).
            as_team = _Person(f"{agent.name} (Kühne & Brandt)", MAILBOX_ADDRESS)
            reply = self.new_message(as_team, [customer], f"Re: {subject}", reply_date, parent=first)
            salutation = {"de": f"Guten Tag {customer.name},", "en": f"Dear {customer.first},",
                          "fr": f"Bonjour {customer.name},", "es": f"Hola {customer.first}:"}[lang]
            answer = self.rng.choice(_REPLY_BODIES[lang]).format(**params)
            reply_text = (f"{salutation}\n\n{answer}\n\n{_CLOSING[lang]}\n{agent.name}\n\n"
                          f"{self.signature(agent)}\n{self.quote(first, customer, lang)}")
            self.set_text(reply, reply_text)
            self.finish("Sent", reply, ["\\Seen"], delay_seconds=1)
            if self.rng.random() < 0.4:
                follow_date = self.later(reply_date, 30, 60 * 72)
                follow = self.new_message(customer, [_INFO], f"Re: {subject}", follow_date, parent=reply)
                follow_text = (f"{self.rng.choice(_FOLLOW_UPS[lang])}\n\n{customer.name}\n\n"
                               f"{self.quote(reply, agent, lang)}")
                self.set_text(follow, follow_text)
                self.finish(folder, follow, self.received_flags(follow_date))

    def invoices(self, n: int) -> None:
        for _ in range(n):
            supplier, item = self.rng.choice(_SUPPLIERS)
            date = self.when(self.start, self.end)
            number = f"{date:%Y}-{self.rng.randrange(1, 9999):04d}"
            amount = self.rng.randrange(1_500, 250_000) / 100
            amount_de = f"{amount:,.2f} €".replace(",", "X").replace(".", ",").replace("X", ".")
            msg = self.new_message(supplier, [_INFO], f"Ihre Rechnung Nr. {number} von {supplier.name}", date,
                                   user_agent="Rechnungsversand 3.2")
            text = (f"Sehr geehrte Damen und Herren,\n\nanbei erhalten Sie unsere Rechnung Nr. {number} "
                    f"über {amount_de} für „{item}“.\nBitte überweisen Sie den Betrag innerhalb von 14 Tagen "
                    f"ohne Abzug.\n\nMit freundlichen Grüßen\n{supplier.name}\n")
            self.set_text(msg, text)
            pdf = _make_pdf(self.rng, [supplier.name, "", f"Rechnung Nr. {number}", f"Datum: {date:%d.%m.%Y}",
                                       f"Leistung: {item}", f"Gesamtbetrag: {amount_de}"])
            msg.add_attachment(pdf, maintype="application", subtype="pdf",
                               filename=f"Rechnung_{number}.pdf")
            if self.rng.random() < 0.2:
                rows = [["Pos.", "Beschreibung", "Menge", "Einzelpreis", "Summe"]]
                for pos in range(1, self.rng.randrange(2, 6)):
                    price = self.rng.randrange(100, 9_999) / 100
                    qty = self.rng.randrange(1, 20)
                    rows.append([str(pos), f"{item} – Teil {pos}", str(qty), f"{price:.2f}".replace(".", ","),
                                 f"{price * qty:.2f}".replace(".", ",")])
                msg.add_attachment(_make_csv(rows), maintype="text", subtype="csv",
                                   filename=f"Einzelverbindungsnachweis_{number}.csv")
            flags = ["\\Seen"] if self.rng.random() < 0.85 else []
            if self.rng.random() < 0.15:
                flags.append("$Label2")  # Thunderbird's "Work"; here: "zur Buchhaltung"
            self.finish("Rechnungen", msg, flags)

    def project(self, n_threads: int) -> None:
        for rounds in range(1, n_threads + 1):
            subject = self.rng.choice(_PROJECT_SUBJECTS).format(r=rounds)
            agency = self.rng.choice(_AGENCY)
            colleague = self.rng.choice(TEAM)
            # Dates first: a message counts as \Answered only if the thread really continues.
            dates = [self.when(self.start, self.end)]
            for _ in range(self.rng.randrange(0, 4)):
                following = self.later(dates[-1], 30, 60 * 72)
                if following > self.end:
                    break
                dates.append(following)
            as_team = _Person(f"{colleague.name} (Kühne & Brandt)", MAILBOX_ADDRESS)
            parent: EmailMessage | None = None
            for step, date in enumerate(dates):
                from_agency = step % 2 == 0
                sender, recipient = (agency, _INFO) if from_agency else (as_team, agency)
                subj = subject if parent is None else f"Re: {subject}"
                msg = self.new_message(sender, [recipient], subj, date, parent=parent,
                                       cc=[colleague] if from_agency and self.rng.random() < 0.5 else ())
                text = (f"Hallo {'zusammen' if from_agency else recipient.first},\n\n"
                        + self.rng.choice((
                            "anbei die überarbeiteten Entwürfe. Wir haben die Navigation verschlankt und die "
                            "Kontaktseite nach oben gezogen.",
                            "wie besprochen hier die Sitemap als Tabelle – bitte markiert, was "
                            "entfallen kann.",
                            "die Änderungen sehen gut aus. Zwei Kleinigkeiten: Logo etwas größer, und "
                            "„Über uns“ bitte ohne Stockfotos.",
                            "kurze Rückfrage: Sollen die Referenzen nach Branche oder nach Jahr "
                            "sortiert sein?",
                        ))
                        + f"\n\nViele Grüße\n{agency.name if from_agency else colleague.name}\n")
                if parent is not None:
                    prev_sender = agency if not from_agency else colleague
                    text += "\n" + self.quote(parent, prev_sender, "de")
                html = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head>"
                        f"<body style=\"font-family:Arial\"><p>{text.split(chr(10))[0]}</p><p>"
                        + "<br>\n".join(text.split("\n")[2:6]) + "</p></body></html>")
                self.set_text(msg, text, html=html if from_agency else None)
                if from_agency:
                    if self.rng.random() < 0.6:
                        for k in range(self.rng.randrange(1, 3)):
                            msg.add_attachment(_make_png(self.rng), maintype="image", subtype="png",
                                               filename=f"Entwurf_Startseite_v{rounds}_{k + 1}.png")
                    if self.rng.random() < 0.3:
                        rows = [["Seite", "URL", "Status", "Verantwortlich"]]
                        for page in ("Startseite", "Leistungen", "Über uns", "Referenzen", "Kontakt",
                                     "Impressum", "Datenschutzerklärung"):
                            rows.append([page, "/" + page.lower().replace(" ", "-").replace("ü", "ue"),
                                         self.rng.choice(("offen", "in Arbeit", "fertig")),
                                         self.rng.choice((*(p.name for p in TEAM), "Pixelwerk"))])
                        msg.add_attachment(_make_csv(rows), maintype="text", subtype="csv",
                                           filename="Sitemap_Übersicht.csv")
                    folder = "Projekte/Website-Relaunch"
                    flags = self.received_flags(date, answered=step + 1 < len(dates))
                else:
                    folder = "Sent"
                    flags = ["\\Seen"]
                self.finish(folder, msg, flags)
                parent = msg

    def project_general(self, n: int) -> None:
        for _ in range(n):
            sender = self.rng.choice(TEAM)
            date = self.when(self.start, self.end)
            subject = self.rng.choice(("Projektliste Q2", "Messestand Prolight + Sound – Planung",
                                       "Ausschreibung Stadthalle: Unterlagen"))
            msg = self.new_message(sender, [_INFO], subject, date)
            self.set_text(msg, f"Hallo zusammen,\n\nzur Info für alle: {subject}.\nDetails im Anhang.\n\n"
                               f"{sender.first}\n")
            pdf = _make_pdf(self.rng, [subject, f"Stand {date:%d.%m.%Y}"])
            filename = subject.split(":")[0].replace(" ", "_") + ".pdf"
            msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=filename)
            self.finish("Projekte", msg, ["\\Seen"])

    def office(self, n: int) -> None:
        for _ in range(n):
            sender = self.rng.choice(TEAM)
            date = self.when(self.start, self.end)
            subject = self.rng.choice(_OFFICE_SUBJECTS)
            msg = self.new_message(sender, [_INFO], subject, date)
            text = f"Hallo zusammen,\n\n{subject}.\n\nLiebe Grüße\n{sender.first}\n"
            self.set_text(msg, text)
            if subject.startswith("Urlaubsplanung"):
                rows = [["Name", "Von", "Bis", "Vertretung"]]
                for person in TEAM:
                    begin = self.rng.randrange(1, 25)
                    rows.append([person.name, f"{begin:02d}.07.2024", f"{begin + 6:02d}.07.2024",
                                 self.rng.choice([p.name for p in TEAM if p != person])])
                msg.add_attachment(_make_csv(rows), maintype="text", subtype="csv",
                                   filename="Urlaubsübersicht_2024.csv")
            elif subject.startswith(("Teammeeting", "Einladung")):
                msg.add_attachment(_make_ics(self.rng, subject, self.later(date, 60 * 24, 60 * 24 * 7)),
                                   maintype="text", subtype="calendar", params={"method": "REQUEST"},
                                   filename="einladung.ics")
            self.finish("Büro", msg, self.received_flags(date))

    def newsletters(self, n: int) -> None:
        for _ in range(n):
            sender, subject = self.rng.choice(_NEWSLETTERS)
            date = self.when(self.start, self.end)
            msg = self.new_message(sender, [_INFO], subject, date, user_agent="Newsletter2Go")
            msg["List-Unsubscribe"] = f"<mailto:unsubscribe@{sender.addr.split('@')[1]}?subject=unsubscribe>"
            msg["Precedence"] = "bulk"
            text = (f"{subject}\n{'=' * len(subject)}\n\nLiebe Leserinnen und Leser,\n\n"
                    "in dieser Ausgabe: Termine, Förderungen und Neuigkeiten aus der Branche.\n\n"
                    "Abmelden: https://example.invalid/abmelden\n")
            html = (f"<!DOCTYPE html><html lang=\"de\"><head><meta charset=\"utf-8\"><title>{subject}</title>"
                    "</head><body><table width=\"600\" align=\"center\"><tr><td>"
                    f"<h1 style=\"color:#c0392b\">{subject}</h1><p>Liebe Leserinnen und Leser,</p>"
                    "<p>in dieser Ausgabe: <b>Termine</b>, <i>Förderungen</i> und Neuigkeiten "
                    "aus der Branche.</p><p><a href=\"https://example.invalid/abmelden\">Abmelden</a></p>"
                    "</td></tr></table></body></html>")
            self.set_text(msg, text, html=html)
            self.finish("INBOX", msg, self.received_flags(date))

    def forwards(self, n: int) -> None:
        for _ in range(n):
            sender = self.rng.choice(TEAM)
            customer = self.rng.choice(_CUSTOMERS)
            date = self.when(self.start, self.end)
            inner = self.new_message(customer, [sender], "Kurze Frage zum Angebot", date - timedelta(hours=3))
            self.set_text(inner, f"Hallo {sender.first},\n\nist der Preis im Angebot netto oder brutto?\n\n"
                                 f"{customer.name}\n")
            fwd = self.new_message(sender, [_INFO], "Fwd: Kurze Frage zum Angebot", date)
            self.set_text(fwd, "Bitte übernehmen, ich bin ab morgen im Urlaub. Danke!\n")
            fwd.add_attachment(inner)
            self.finish("INBOX", fwd, self.received_flags(date))

    def archive(self, n: int) -> None:
        before = len(self.folders["Archive"])
        self.support_threads("Archive", n, self.archive_start, self.archive_end)
        # Archived mail has long been read.
        self.folders["Archive"][before:] = [
            SampleMessage(m.raw, tuple(dict.fromkeys(("\\Seen", *m.flags))), m.internal_date)
            for m in self.folders["Archive"][before:]
        ]

    def drafts(self) -> None:
        for subject in _DRAFT_SUBJECTS[: self.count(len(_DRAFT_SUBJECTS))]:
            author = self.rng.choice(TEAM)
            date = self.when(self.end - timedelta(days=20), self.end)
            msg = self.new_message(_Person(author.name, MAILBOX_ADDRESS), [self.rng.choice(_CUSTOMERS)],
                                   subject, date)
            self.set_text(msg, "Sehr geehrte Damen und Herren,\n\n[TODO: Text ergänzen – Preise mit Jürgen "
                               "abstimmen]\n\nMit freundlichen Grüßen\n")
            self.finish("Drafts", msg, ["\\Seen", "\\Draft"], delay_seconds=0)

    def trash_and_junk(self, n_trash: int, n_junk: int) -> None:
        for i in range(n_trash):
            sender, subject = self.rng.choice(_NEWSLETTERS)
            date = self.when(self.start, self.end)
            msg = self.new_message(sender, [_INFO], subject, date)
            self.set_text(msg, f"{subject}\n\n(alte Ausgabe)\n")
            # A couple already marked \Deleted but not expunged yet, as clients leave them.
            self.finish("Trash", msg, ["\\Seen", "\\Deleted"] if i < 2 else ["\\Seen"])
        for _ in range(n_junk):
            sender = self.rng.choice(_SPAMMERS)
            date = self.when(self.start, self.end)
            subject = self.rng.choice(_SPAM_SUBJECTS)
            msg = self.new_message(sender, [_INFO], subject, date, user_agent="Mailer 1.0")
            msg["X-Spam-Flag"] = "YES"
            msg["X-Spam-Score"] = f"{self.rng.randrange(60, 150) / 10:.1f}"
            self.set_text(msg, "Klicken Sie hier: http://example.invalid/🎁\n",
                          html='<html><body><a href="http://example.invalid/">HIER KLICKEN</a></body></html>')
            self.finish("Junk", msg, ["$Junk"])

    def build(self) -> dict[str, list[SampleMessage]]:
        self.support_threads("INBOX", self.count(45), self.start, self.end)
        self.support_threads("Support", self.count(40), self.start, self.end)
        self.archive(self.count(25))
        self.invoices(self.count(40))
        self.project(self.count(20))
        self.project_general(self.count(4))
        self.office(self.count(20))
        self.newsletters(self.count(14))
        self.forwards(self.count(4))
        self.drafts()
        self.trash_and_junk(self.count(10), self.count(6))
        # A mailbox fills up over time: UID order is arrival order.
        return {name: sorted(msgs, key=lambda m: m.internal_date) for name, msgs in self.folders.items()}


def generate_mailbox(seed: int = 1, scale: float = 1.0) -> dict[str, list[SampleMessage]]:
    """Generate the sample team mailbox: folder name -> messages in arrival (UID) order.

    Folder names use ``/`` as hierarchy separator (see :data:`FOLDERS`); ``Junk`` may be empty
    only at very small scales.  About 350–400 messages at ``scale=1.0``.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    return _Builder(seed, scale).build()


# --------------------------------------------------------------------------- bulk

_BULK_SUBJECTS: tuple[bytes, ...] = (
    b"Statusbericht Woche",
    b"=?UTF-8?Q?Auftragsbest=C3=A4tigung?=",
    b"=?UTF-8?B?TGllZmVyc2NoZWluIGbDvHIgQmVzdGVsbHVuZw==?=",  # "Lieferschein für Bestellung"
    b"Re: Ticket",
    b"=?UTF-8?Q?R=C3=BCckfrage_zu_Angebot?=",
)
_BULK_SENDERS: tuple[bytes, ...] = (
    b"=?UTF-8?Q?J=C3=BCrgen_Wei=C3=9F?= <juergen.weiss@kuehne-brandt.de>",
    b"Monitoring <monitoring@kuehne-brandt.de>",
    b"=?UTF-8?Q?=C3=89lodie_Dubois?= <e.dubois@atelier-lumiere.fr>",
    b"Shop <shop@roesterei-suess.de>",
)
_BULK_BODIES: tuple[bytes, ...] = (
    "Guten Tag,\r\n\r\nanbei der automatische Bericht. Alle Systeme laufen normal.\r\n\r\nGrüße\r\n".encode(),
    "Hallo,\r\n\r\ndie Bestellung wurde versandt und trifft voraussichtlich übermorgen ein.\r\n".encode(),
    b"Hi,\r\n\r\njust a short note: the nightly backup finished successfully.\r\n",
)


def generate_bulk(
    n: int,
    seed: int = 1,
    *,
    start: datetime | None = None,
) -> list[SampleMessage]:
    """``n`` small valid messages (about 600 bytes each), fast: 100,000 take a couple of seconds.

    Built from byte templates rather than :mod:`email` objects, which would be ~50x slower.  About
    a third carry ``\\Seen``, a few ``\\Flagged``; dates advance a few minutes per message.
    """
    rng = random.Random(seed)
    moment = start or datetime(2023, 1, 2, 8, 0, tzinfo=_BERLIN_WINTER)
    step = timedelta(seconds=150)
    out: list[SampleMessage] = []
    append = out.append
    subjects, senders, bodies = _BULK_SUBJECTS, _BULK_SENDERS, _BULK_BODIES
    seed_tag = b"%d" % seed
    flag_choices: tuple[tuple[str, ...], ...] = (
        (), ("\\Seen",), ("\\Seen",), (), ("\\Seen", "\\Answered"), ("\\Flagged",), (), ("\\Seen",),
    )
    for i in range(n):
        moment += step
        r = rng.getrandbits(30)
        raw = b"".join((
            b"Return-Path: <bounce@kuehne-brandt.de>\r\nMessage-ID: <bulk.", seed_tag, b".", b"%d" % i,
            b"@kuehne-brandt.de>\r\nDate: ", format_datetime(moment).encode("ascii"),
            b"\r\nFrom: ", senders[r % 4], b"\r\nTo: info@kuehne-brandt.de\r\nSubject: ",
            subjects[(r >> 2) % 5], b" #%d" % (i + 1),
            b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n", bodies[(r >> 5) % 3],
            b"Referenz: %08x\r\n" % (r ^ i),
        ))
        append(SampleMessage(raw, flag_choices[(r >> 7) % 8], moment + timedelta(seconds=r % 60)))
    return out
