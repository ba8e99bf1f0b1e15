"""The HTTP endpoint service: listens once started; at shutdown stops listening and lets the
requests in flight finish, within the shutdown's deadline."""

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from attolytics.logs import logger
from attolytics.shutdown import Shutdown

log = logger(__name__)

# How long a stop lets keep-alive connections end with an answer before it closes the idle ones:
# long enough for a proxy's busy connections to each carry one more request.
KEEP_ALIVE_GRACE_SECONDS = 1.0


class HttpEndpointService(Service):
    """Serves `site` on `endpoint` (an IStreamServerEndpoint); `description` names it in messages.

    `on_listening(port)` is called once the port is open, `on_fatal(message)` when it cannot be.
    """

    def __init__(self, endpoint, description: str, site, shutdown: Shutdown, on_listening, on_fatal):
        self.endpoint = endpoint
        self.description = description
        self.site = site
        self.shutdown = shutdown
        self.on_listening = on_listening
        self.on_fatal = on_fatal
        self.port = None
        self.keep_alive_grace = KEEP_ALIVE_GRACE_SECONDS

    def startService(self):
        super().startService()
        self.site.closing = False  # started again after a stop: keep connections alive again
        self.endpoint.listen(self.site).addCallbacks(self._listening, self._cannot_listen)

    def _listening(self, port) -> None:
        self.port = port
        log.info("listening on {address}, as {description} says", address=port.getHost(),
                 description=self.description)
        self.on_listening(port)

    def _cannot_listen(self, failure) -> None:
        self.on_fatal(f"cannot listen on {self.description}: {failure.getErrorMessage()}")

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.port is not None:
            # None when the port has closed already (twisted gives no Deferred then).
            closing = self.port.stopListening()
            if closing is not None:
                await closing
        # Keep-alive connections end as their next answer is sent, so that a proxy or a client
        # never sends a request on a connection just as it closes (it would not know whether
        # the request was taken). Those still idle after a moment are closed.
        self.site.stop_keeping_alive()
        await self.shutdown.within(self.site.connections.idle(), at_most=self.keep_alive_grace)
        self.site.close_idle_connections()
        if not await self.shutdown.within(self.site.in_flight.idle()):
            log.warn("stopping with {count} requests still unanswered",
                     count=len(self.site.in_flight.items))
