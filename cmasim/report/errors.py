"""The report's error type, importable without matplotlib (the CLI catches it)."""


class ReportError(ValueError):
    """The folder is not a cmasim output folder (or is missing what a report needs)."""
