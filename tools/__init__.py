"""The command line: one module per ``resdet`` command, dispatched by tools.cli."""

# Exports: none (a package exports only through an _EXPORTS map, see engine.exports).
