"""The admin port's routes (with `admin_listen`): the metrics, health and readiness, and the pages
the service adds (the live view), nothing of the event routes; every other path is answered 404 in JSON."""

from twisted.web.resource import Resource

from attolytics.http.answers import write_json

# What the admin port answers to GET (and HEAD, which twisted.web answers as a GET without a body).
_READ_METHODS = (b"GET", b"HEAD")


class AdminResource(Resource):
    """Answers each path of `pages` (path -> a function of the request giving the answer's bytes,
    or NOT_DONE_YET) on GET; 404 elsewhere, 405 for another method."""

    isLeaf = True

    def __init__(self, pages: dict):
        super().__init__()
        self.pages = {path.encode(): page for path, page in pages.items()}

    def render(self, request):
        page = self.pages.get(request.path)
        if page is None:
            return write_json(request, 404, {"error": "no such route on the admin port"})
        if request.method not in _READ_METHODS:
            return write_json(request, 405, {"error": "method not allowed; use GET"}, {"Allow": "GET, HEAD"})
        return page(request)


def admin_pages(routes) -> dict:
    """The admin port's pages that the public routes' handlers answer (`routes`: http.routes.Routes)."""
    return {"/metrics": routes.metrics_text, "/healthz": routes.healthz, "/readyz": routes.readyz}
