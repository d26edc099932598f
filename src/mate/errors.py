"""Errors a user can cause. The CLI prints their message alone, without a traceback."""


class MateError(Exception):
    """Base class of every error caused by user input (config, data, checkpoints, paths)."""


class ConfigError(MateError):
    """A configuration key or value is wrong."""


class DataError(MateError):
    """A dataset is missing, incomplete or corrupt."""


class CheckpointError(MateError):
    """A checkpoint is missing, corrupt or does not match the model."""


class TrainingDiverged(MateError):
    """The loss became NaN or infinite."""


class FolderInUse(MateError):
    """Another process holds the folder (a run folder, a comparison's output folder)."""


class MateWarning(UserWarning):
    """Something the user should know about a result that is still given (the CLI prints the message alone)."""
