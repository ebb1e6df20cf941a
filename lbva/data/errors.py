"""Errors raised by the data pipeline; each message says what was found, what is allowed, what to do."""

from __future__ import annotations

from lbva.errors import UserError


class DataError(UserError, ValueError):
    """A dataset, segment or cache that cannot be used as it is."""


class MissingCameraError(DataError):
    """The embodiment declares a camera the dataset does not have."""


class VideoDecodeError(DataError):
    """A video file is missing, truncated or cannot be decoded."""


class StaleCacheError(DataError):
    """A latent cache built with other encoders or settings than the ones asked for."""
