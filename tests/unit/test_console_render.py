"""The console's small pure pieces: times for people, and where a login may send the browser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from api.console.pages import _safe_next
from api.console.render import ago, env, when

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_ages_read_like_people_say_them() -> None:
    assert ago(NOW - timedelta(seconds=20), NOW) == "just now"
    assert ago(NOW - timedelta(minutes=5), NOW) == "5 min ago"
    assert ago(NOW - timedelta(hours=3, minutes=59), NOW) == "3 h ago"
    assert ago(NOW - timedelta(days=3), NOW) == "3 d ago"
    assert ago(NOW + timedelta(days=12, hours=1), NOW) == "in 12 d"
    assert ago(NOW - timedelta(days=800), NOW) == "2 y ago"
    assert ago(None, NOW) == ""


def test_a_time_is_utc_text_in_a_time_element_and_escaped() -> None:
    html = str(when("2026-12-01T21:24:00+01:00"))
    assert html.startswith('<time datetime="2026-12-01T20:24:00+00:00"') and "2026-12-01 20:24 UTC" in html
    assert "muted" in str(when(None))
    assert "ago" in str(when((datetime.now(UTC) - timedelta(days=2)).isoformat(), relative=True))


def test_templates_escape_what_users_wrote() -> None:
    page = env.from_string("<p>{{ text }}</p>").render(text='<script>alert("x")</script>')
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_a_login_sends_the_browser_only_to_console_paths() -> None:
    assert _safe_next("/console/requests/5") == "/console/requests/5"
    for bad in (None, "", "https://evil.example/", "//evil.example/console", "/console\\@evil", "/v1/requests",
                "/console/x\nSet-Cookie: a=b", "/console/x\r\nLocation: //evil", "javascript:alert(1)"):
        assert _safe_next(bad) == "/console/requests"


@given(st.text(max_size=80))
def test_no_next_path_ever_leaves_the_console(raw: str) -> None:
    target = _safe_next(raw)
    assert target.startswith("/console") and not target.startswith("//")
    assert "\\" not in target and target.isprintable()
