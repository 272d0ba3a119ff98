"""One exception hierarchy: every error says what was wrong and what to do."""

from __future__ import annotations


class ImmunescapeError(Exception):
    """Base class of all errors raised deliberately by immunescape."""

    exit_code = 1


class InputError(ImmunescapeError, ValueError):
    """The data (AnnData, matrix, layer, parameters) cannot be scored as given."""


class SignatureError(ImmunescapeError, ValueError):
    """A signature or signature file is malformed or unknown."""


class GeneResolutionError(ImmunescapeError, KeyError):
    """Signature genes could not be matched to the data well enough."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ImmunescapeIOError(ImmunescapeError, OSError):
    """Reading or writing a file failed."""


class UsageError(ImmunescapeError):
    """A command line that cannot work as given (exit code 2, as argparse's own usage errors)."""

    exit_code = 2


class ImmunescapeWarning(UserWarning):
    """Base category of immunescape's warnings (filter with ``warnings.filterwarnings``)."""


class DataWarning(ImmunescapeWarning):
    """The data look unlike what the method expects (e.g. raw counts for ``mean``)."""


class CoverageWarning(ImmunescapeWarning):
    """Some signature genes were not found in the data."""
