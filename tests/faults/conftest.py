from tests.integration.conftest import connectors  # noqa: F401  (session fixture shared with integration)
