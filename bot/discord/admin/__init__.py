"""Server admins' commands: /quota (limits) and /usage (what was used)."""
