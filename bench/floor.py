"""The floor: a bare Flask app answering the benchmark's requests with a constant body, on the same
server stack (granian, RSGI in front of WSGI, same workers). The mock's figures are quoted as ratios to it."""

from __future__ import annotations

from flask import Flask, Response

from mockserver.web.serving import Server, in_worker

BODY = b'{"success":true,"data":{"id":"ret_floor"},"meta":{"request_id":"req_floor","timestamp":"x"}}'


def create() -> Flask:
    app = Flask("floor")

    @app.route("/<path:anything>", methods=["GET", "POST", "PATCH"])
    def answer(anything: str) -> Response:
        return Response(BODY, 200, mimetype="application/json")

    return app


def create_rsgi() -> Server:
    """The floor as the mock is served: granian's RSGI interface in front of the WSGI app, in a worker
    started as the mock's are (mockserver.web.launch)."""
    return in_worker(create().wsgi_app)
