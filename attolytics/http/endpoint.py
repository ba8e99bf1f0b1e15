"""The HTTP endpoint service: listens once started; at shutdown stops listening and lets the
requests in flight finish, within the shutdown's deadline."""

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from attolytics.logs import logger
from attolytics.shutdown import Deadline

log = logger(__name__)


class HttpEndpointService(Service):
    """Serves `site` on `endpoint` (an IStreamServerEndpoint); `description` names it in messages.

    `listening` fires with the port once it is open; `on_fatal(message)` is called when it
    cannot be opened.
    """

    def __init__(self, endpoint, description: str, site, deadline: Deadline, on_fatal):
        self.endpoint = endpoint
        self.description = description
        self.site = site
        self.deadline = deadline
        self.on_fatal = on_fatal
        self.port = None
        self.listening = Deferred()

    def startService(self):
        super().startService()
        self.endpoint.listen(self.site).addCallbacks(self._listening, self._cannot_listen)

    def _listening(self, port) -> None:
        self.port = port
        log.info("listening on {address}", address=port.getHost())
        self.listening.callback(port)

    def _cannot_listen(self, failure) -> None:
        self.on_fatal(f"cannot listen on {self.description}: {failure.getErrorMessage()}")

    def stopService(self):
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.port is not None:
            await self.port.stopListening()
        if not await self.deadline.within(self.site.in_flight.idle()):
            log.warn("stopping with {count} requests still unanswered",
                     count=len(self.site.in_flight.requests))
