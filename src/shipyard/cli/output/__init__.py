"""How shipyard's events reach a person or a machine: the output modes and their renderers.

``mode.py`` picks the mode (a pure function of the environment, the TTY and the flags), ``factory.py``
builds the matching console; ``live.py`` (terminal), ``github.py`` (GitHub Actions) and the plain
``shipyard.cli.console.Console`` render events; ``summary.py`` turns a release record into Markdown.
"""
