"""The command line's exit codes: part of its interface (scripts and supervisors read them).

0 success, 2 bad usage, configuration or input, 1 a failure at run time (provider down,
database unreachable). Here, not in :mod:`bot.cli`, so the handlers in :mod:`bot.commands` and
the parser that calls them both import them without importing each other.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
