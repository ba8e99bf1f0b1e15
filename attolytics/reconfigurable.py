"""Services that depend on the configuration: each takes it through reconfigure(), handed down
by its parent to its children in order; start-up is simply the first configuration."""

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred


class ReconfigurableService(Service):
    """A service that follows the configuration in force.

    reconfigure(configuration) is called with the first configuration before the service
    starts, then with each configuration a reload reads, and again once something it depends on
    (the database) becomes ready. It returns None or a Deferred; only a service that can refuse
    a configuration (the database, whose tables must fit it) may fail, and it must then have
    changed nothing.
    """

    def reconfigure(self, configuration):
        """Follow `configuration` from now on."""
        raise NotImplementedError


async def hand_down(parent, configuration) -> None:
    """Hand `configuration` to each reconfigurable child of `parent`, in order, each awaited: a
    child that fails stops the walk, so the children after it keep the configuration in force."""
    for child in list(parent):
        if isinstance(child, ReconfigurableService):
            await maybeDeferred(child.reconfigure, configuration)
