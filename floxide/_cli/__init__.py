"""The `floxide` command, one module per subcommand (`floxide.cli:main` is the entry point).

`_main` builds the parser from `COMMANDS` (each module's `add(subparsers)` registers its
subcommand and sets `handler`), runs the handler under trio and turns every user-caused
problem into one line on stderr (`FLOXIDE_DEBUG=1` adds the traceback). `_common` holds
what several subcommands share: loading `MODULE:ATTR`, reading JSON arguments exactly,
opening backends (read-only commands never create or change a file) and JSON output.
"""
