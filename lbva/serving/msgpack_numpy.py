"""openpi's msgpack-with-numpy format: re-exported from :mod:`lbva_client.msgpack_numpy`, its one implementation
(the torch-free ``lbva-client`` distribution that lbva depends on)."""

from lbva_client.msgpack_numpy import (  # noqa: F401
    ALLOWED_KINDS,
    MsgpackNumpyError,
    Packer,
    pack_array,
    packb,
    unpack_array,
    unpackb,
)

__all__ = ["ALLOWED_KINDS", "MsgpackNumpyError", "Packer", "pack_array", "packb", "unpack_array", "unpackb"]
