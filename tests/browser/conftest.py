"""The integration tests' fixtures (a real server on ephemeral ports) for the browser tests."""

from tests.integration.conftest import ca, server_factory

__all__ = ["ca", "server_factory"]
