"""Runs LocalStack in host mode (no Docker) for the test suite and the demo.

LocalStack 4.4.0 in host mode has two traps this launcher closes before it
hands over to `localstack.runtime.main`:

1. Its twisted gateway listens on 0.0.0.0 whatever GATEWAY_LISTEN says: the
   TCP endpoint is created without an interface. We give it one
   (LOCALSTACK_BIND_HOST, default 127.0.0.1), so nothing listens beyond
   loopback.
2. S3 object bodies go to a hard-coded /tmp/localstack-s3-storage shared by
   every LocalStack on the machine. We point it at LOCALSTACK_S3_DIR, a
   folder private to this instance.
"""

import os
import sys
import types

from twisted.internet import endpoints

bind_host = os.environ.get("LOCALSTACK_BIND_HOST", "127.0.0.1")
s3_dir = os.environ.get("LOCALSTACK_S3_DIR")
if not s3_dir:
    sys.exit("launch.py: set LOCALSTACK_S3_DIR to a private folder for S3 object bodies")


def tcp4_on_bind_host(reactor, port, backlog=50, interface=""):
    return endpoints.TCP4ServerEndpoint(reactor, port, backlog, interface or bind_host)


patched = types.SimpleNamespace(**vars(endpoints))
patched.TCP4ServerEndpoint = tcp4_on_bind_host

import localstack.runtime.server.twisted as twisted_server  # noqa: E402
import localstack.services.s3.provider as s3_provider  # noqa: E402

twisted_server.endpoints = patched
s3_provider.DEFAULT_S3_TMP_DIR = s3_dir

from localstack.runtime.main import main  # noqa: E402

main()
