"""One handler per ``mate`` subcommand.

A handler takes plain values (paths, numbers, lists of ``section.key=value`` overrides; never an
``argparse.Namespace``), does its work through the library, prints what the user reads, and
returns the process's exit status. ``mate.cli`` only parses the command line and calls them;
errors a user can cause are raised as ``MateError`` and printed by the CLI as one line.

Each handler lives in its own module and imports what it needs there, so that one subcommand
does not pay for the imports of the others.
"""
