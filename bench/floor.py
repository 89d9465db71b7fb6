"""The floor: a bare Flask app answering the benchmark's requests with a constant body, on the same
server stack (granian, WSGI, same workers). The mock's figures are quoted as ratios to it."""

from __future__ import annotations

from flask import Flask, Response

BODY = b'{"success":true,"data":{"id":"ret_floor"},"meta":{"request_id":"req_floor","timestamp":"x"}}'


def create() -> Flask:
    app = Flask("floor")

    @app.route("/<path:anything>", methods=["GET", "POST", "PATCH"])
    def answer(anything: str) -> Response:
        return Response(BODY, 200, mimetype="application/json")

    return app
