"""The web dashboard: server-rendered pages with JSON twins, live updates by
server-sent events, health, metrics and mail client autoconfiguration.

``server.WebServer`` runs it inside ``imapgate serve``'s event loop;
``app.create_app`` builds the Starlette application; ``data.Dashboard`` is the
only module here that talks to the gateway (DESIGN decision 14: the same
services as IMAP, no second write path, no second permission model);
``render`` makes hostile mail harmless; ``sessions`` and ``security`` handle
logins, cookies, CSRF and headers.  See docs/dashboard.md.
"""
