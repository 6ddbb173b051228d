"""The `facestream` subcommands, one module per command group.

Each module exposes `register(subparsers)`; cli.py lists the modules. A handler returns an
exit status and raises FacestreamError for anything the user must fix.
"""
