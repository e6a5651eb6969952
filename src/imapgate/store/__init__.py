"""Persistence: the SQLAlchemy 2 Core schema, Alembic migrations, engines for
SQLite (default, WAL) and PostgreSQL.  Knows nothing of IMAP sessions."""
