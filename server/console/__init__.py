"""The web console: server-rendered pages of the stageline server, readable without JavaScript
(htmx, served from here, only refreshes a running promotion and submits the environment
selector). Every page and action goes through the same checks as the JSON API: the console is
one more client of the operations in server.operations and the runs in server.runs."""

from server.console.routes import add_console_routes

__all__ = ["add_console_routes"]
