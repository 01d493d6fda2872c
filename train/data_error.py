"""The error of training data that cannot be used (its own module: train/data.py and train/bad_rows.py both raise
it, and neither imports the other's users)."""


class DataError(ValueError):
    """A dataset or row cannot be used; the message names the row and the file or column."""
