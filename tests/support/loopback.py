"""The lifecycle shared by the test servers on loopback (stand-in API, flaky proxy)."""

import threading


class LoopbackServer:
    """start()/stop(), a context manager and ``.port`` for a ThreadingHTTPServer in a daemon thread.
    Subclasses set ``server_class``, ``handler_class``, ``thread_name`` and ``owner_attr`` (the
    server attribute through which their handlers reach them), and ``host``/``_port`` in __init__."""

    server_class = handler_class = None
    thread_name = "loopback-server"
    owner_attr = "owner"
    _server = _thread = None

    def start(self):
        if self._server is None:
            self._server = self.server_class((self.host, self._port), self.handler_class)
            setattr(self._server, self.owner_attr, self)
            # a short poll interval so that stop() returns fast
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name=self.thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        return self._server.server_address[1] if self._server else self._port
