"""The torch-free client: re-exported from :mod:`lbva_client.client`, its one implementation (the ``lbva-client``
distribution, which installs on Python >= 3.10 without lbva; see ``clients/lbva-client``)."""

from lbva_client.client import CallInterrupted, ConnectionLostError, LbvaClient, ServerError  # noqa: F401

__all__ = ["CallInterrupted", "ConnectionLostError", "LbvaClient", "ServerError"]
