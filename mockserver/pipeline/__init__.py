"""One request path for every door and every terminal (sans-I/O): a `Request` in, an `Answer` out.

The mock's server, the in-process mocks (through the same Flask app) and the proxy all run their
requests through a `Pipeline`; only the terminal differs: the mock's handler (`Serve`) or the proxy's
forwarder (`mockserver.proxy`). Validation, the journal, violations, masking and error rendering are
written once, here.
"""

from mockserver.pipeline.context import Context
from mockserver.pipeline.exchange import Answer, BodyRefused, Request, json_answer
from mockserver.pipeline.run import CLIENT_FAULTS, ContractViolation, Pipeline, Step, Terminal
from mockserver.pipeline.serve import Serve

__all__ = ["CLIENT_FAULTS", "Answer", "BodyRefused", "Context", "ContractViolation", "Pipeline", "Request", "Serve",
           "Step", "Terminal", "json_answer"]
