"""A real S3 wire peer on loopback: moto's threaded server (Werkzeug over HTTP on 127.0.0.1)."""

from __future__ import annotations

import uuid

import boto3
from moto.server import ThreadedMotoServer

from emberrtc.storage.s3_store import S3Settings
from tests.support.server import free_port

ACCESS_KEY, SECRET_KEY, REGION = "testing-ak", "testing-sk", "us-east-1"


class MotoS3:
    """``stop()`` then ``start()`` brings it back on the same port with its buckets (moto keeps state
    in-process), which is storage going down and coming back."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def settings(self, **overrides: object) -> S3Settings:
        base = S3Settings(
            endpoint=self.endpoint,
            region=REGION,
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            addressing_style="path",
            connect_timeout=1.0,
            read_timeout=5.0,
        )
        return S3Settings(**{**base.__dict__, **overrides})  # type: ignore[arg-type]

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name
