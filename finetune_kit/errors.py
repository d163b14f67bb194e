"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: the message names the field, file or column and says how to fix it."""


class RecipeError(UserError):
    """The recipe file or an override does not describe a valid run."""


class DataError(UserError):
    """A data file or dataset does not fit the recipe."""


class ModelError(UserError):
    """The checkpoint or run folder cannot be loaded."""


def first_line(err: BaseException, limit: int = 200) -> str:
    """The gist of a library exception, short enough for a one-line error."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
