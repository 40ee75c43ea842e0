"""Errors that the workflow turns into one clear line for the user."""


class InputError(ValueError):
    """Bad user input (config value, data file). The message names the key or file and what is wrong."""


class ConfigError(InputError):
    """An invalid config value; the message starts with the dotted key."""

    def __init__(self, key: str, problem: str):
        self.key = key
        self.problem = problem
        super().__init__(f"config key '{key}': {problem}")


class DataError(InputError):
    """A malformed or missing data file; the message names the file (and line)."""
