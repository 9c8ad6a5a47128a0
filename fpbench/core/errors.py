"""The one base of the errors fpbench raises for a user's mistake or an expected condition (an unknown name,
a malformed suite, a missing file, an undecidable test): the command line shows these as one line. Any other
exception is a bug and keeps its traceback."""


class FpbenchError(ValueError):
    """A user's mistake or an expected condition, said in one line (a ValueError, for callers that catch those)."""
