"""The ledger and report tests use the root conftest's ``storage``: a migrated database on
SQLite and on PostgreSQL, no bot, no Discord."""
