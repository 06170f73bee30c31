"""moto's server, answering one request at a time.

DynamoDB applies every conditional write and every ADD atomically per item. moto's own
`moto_server` answers on many threads without locking, so two concurrent conditional puts
can both pass their check: a race real DynamoDB never has, which would make Cinder's
concurrency tests fail by chance. Serving requests one after another gives the atomicity
DynamoDB guarantees (and more), with the same wire protocol.

Usage: python3 moto_serial.py HOST PORT
"""

import os
import sys

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()
