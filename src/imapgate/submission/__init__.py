"""SMTP submission through the gateway, with the double-reply guard (issue 14).

``server`` (aiosmtpd listeners and one handler per connection) → ``service``
(the guard's I/O edges: replica, store, journal, write path) → ``guard`` (the
pure decision) and ``relay`` (the hoster's submission server, during the
client's DATA); ``message`` reads the submitted message's header."""
