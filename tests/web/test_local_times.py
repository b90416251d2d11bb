"""Times are stored in UTC and shown in the viewer's time zone, with the zone named; an instant at the edge of the
calendar, which no zone can shift, is shown in UTC instead of failing the page."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_login import login_user

from core.db import transaction
from core.web import localtime


def test_times_are_shown_in_the_viewers_zone_with_the_zone_named(app, make_user):
    viewer = make_user("kiri.viewer", roles={"operator"})
    with transaction():
        viewer.timezone = "Pacific/Kiritimati"  # UTC+14, the furthest ahead
    with app.test_request_context():
        login_user(viewer)
        assert localtime(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01 14:00:00 +14 (UTC+14:00)"
        assert localtime(None) == ""


def test_an_instant_at_the_edge_of_the_calendar_is_shown_in_utc(app, make_user):
    viewer = make_user("kiri.viewer", roles={"operator"})
    with transaction():
        viewer.timezone = "Pacific/Kiritimati"
    with app.test_request_context():
        login_user(viewer)
        assert localtime(datetime(9999, 12, 31, 23, 59, tzinfo=UTC)) == "9999-12-31 23:59:00 UTC (UTC+00:00)"
    with transaction():
        viewer.timezone = "America/New_York"  # west of UTC in year 1 too (local mean time): year 1 cannot go back
    with app.test_request_context():
        login_user(viewer)
        assert localtime(datetime(1, 1, 1, tzinfo=UTC)) == "1-01-01 00:00:00 UTC (UTC+00:00)"
