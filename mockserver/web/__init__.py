"""The HTTP side: the Flask app over a Mock, the request pipeline, the control plane and the dashboard."""

from mockserver.web.app import ContractViolation, WebMock, create_app, mock_of, served, validate_contracts

__all__ = ["ContractViolation", "WebMock", "create_app", "mock_of", "served", "validate_contracts"]
