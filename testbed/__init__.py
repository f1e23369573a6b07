"""PromptBed orchestrator: configuration, the ``testbed`` command, runs, backends,
accounting, reports."""

__version__ = "0.1.0"
