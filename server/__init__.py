"""The esrag HTTP server, composed in one place above query/, workers/ and dashboard/.

``server.app.create_app(settings)`` is the app `esrag serve` runs; ``server.cli`` registers
that command. Nothing imports this package except the command line (through its entry point)
and tests; it stays empty so that `esrag --help` loads none of the server's libraries.
"""
