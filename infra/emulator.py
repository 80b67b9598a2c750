"""moto server for the local stack, with moto's own event source pollers off.

    .venv/bin/python infra/emulator.py -H 127.0.0.1 -p PORT

The same moto server as `moto_server`, with one change: when an event source
mapping is created (by CloudFormation or the Lambda API), moto also wires
the queue or table to invoke the function itself on every write. It would
run the function in Docker, and for a DynamoDB stream it then drops the
records it handed over, so nothing else could read them. In the local stack
the runners of `infra/local-stack` poll the streams and queues as Lambda
does and run the handlers in-process, so that wiring is undone here. The
mapping itself stays as Lambda holds it: ListEventSourceMappings still
returns every setting.
"""

import sys

from moto.awslambda.models import LambdaBackend
from moto.server import main

_create_event_source_mapping = LambdaBackend.create_event_source_mapping


def _detach(mapping) -> None:
    """Removes `mapping` from the sources moto would invoke it from."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.sqs.models import sqs_backends

    # Copies of every collection: other requests may add to them meanwhile.
    for backends in (sqs_backends, dynamodb_backends):
        for account in list(backends.values()):
            for backend in list(account.values()):
                sources = getattr(backend, "queues", None) or getattr(backend, "tables", {})
                for source in list(sources.values()):
                    wired = getattr(source, "lambda_event_source_mappings", {})
                    for key in [k for k, v in list(wired.items()) if v is mapping]:
                        wired.pop(key, None)


def create_event_source_mapping(self, spec):
    mapping = _create_event_source_mapping(self, spec)
    _detach(mapping)
    return mapping


LambdaBackend.create_event_source_mapping = create_event_source_mapping

if __name__ == "__main__":
    sys.exit(main())
