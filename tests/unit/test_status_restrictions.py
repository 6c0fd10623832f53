"""Which headers the status page's routes need: the page none, its JSON every category it shows."""

from __future__ import annotations

from modelport.config.settings import RESTRICTED_CATEGORIES, Restriction
from modelport.frontends import restrictions as r
from modelport.frontends.http.status_page import status_page_routes


def test_the_page_is_never_restricted_but_its_data_is() -> None:
    checks = r.header_checks({category: Restriction("k", "v") for category in RESTRICTED_CATEGORIES})
    by_path = {route.path: r.route_check(category, checks) for category, route in status_page_routes()}
    assert [path for path, check in by_path.items() if check is None] == [
        "/", "/ui", "/ui/", "/ui/status.js", "/ui/status.css"
    ]  # fmt: skip
    data = by_path["/ui/status.json"]
    assert data is not None and data.http_message == "This API is restricted, expecting header 'k'"
    assert data.allows_http([(b"k", b"v")]) and not data.allows_http([])


def test_the_data_needs_each_restricted_category_it_shows() -> None:
    checks = r.header_checks(
        {"statistics": Restriction("Stats-Key", "a"), "model-config": Restriction("admin", "b"),
         "inference": Restriction("infer", "c")}
    )  # fmt: skip
    check = r.route_check(r.STATUS_DATA, checks)
    assert check is not None
    assert check.http_message == "This API is restricted, expecting headers 'Stats-Key' and 'admin'"
    assert check.allows_http([(b"admin", b"b"), (b"stats-key", b"a")])
    assert not check.allows_http([(b"stats-key", b"a")])
    assert not check.allows_http([(b"stats-key", b"a"), (b"admin", b"wrong")])
    assert r.route_check(r.STATUS_DATA, r.header_checks({"inference": Restriction("i", "v")})) is None
