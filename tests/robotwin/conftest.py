import pytest
from robotwin_fakes import ChunkPolicy, relative_chunk

from lbva.embodiment import get_embodiment, registry
from lbva.serving.server import PolicyServer


@pytest.fixture(autouse=True, scope="module")
def builtin_embodiments_only():
    """lbva's own embodiments (robotwin-aloha-agilex is one), nothing else that happens to be installed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(registry.PLUGINS_ENV, "")
        registry.reset_registry()
        yield
    registry.reset_registry()


@pytest.fixture
def served():
    """Start an in-process ``lbva serve`` for robotwin-aloha-agilex around a ChunkPolicy; yields a function
    ``serve(first=None, later=None, embodiment=...) -> (port, policies)`` (policies: one per connection). ``first``
    is each episode's first chunk (16 actions: the first latent frame is the observation itself), ``later`` the
    chunks after it (32 actions), cycled."""
    servers = []

    def serve(first=None, later=None, embodiment="robotwin-aloha-agilex", metadata=None):
        policies = []

        def factory():
            policies.append(ChunkPolicy(relative_chunk(16, 0) if first is None else first,
                                        [relative_chunk(32, 1)] if later is None else later))
            return policies[-1]

        srv = PolicyServer(factory, get_embodiment(embodiment), host="127.0.0.1", port=0, metadata=metadata).start()
        servers.append(srv)
        return srv.port, policies

    yield serve
    for srv in servers:
        srv.stop()
