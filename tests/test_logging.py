"""Log set-up: output shape, correlation ids, and that no credential reaches a line."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from hft import NetworkError, Secret
from hft._logging import bind_correlation_id, configure, correlation_id, redact, scrub


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure() changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def json_logs(level: str = "debug") -> io.StringIO:
    buf = io.StringIO()
    configure(level=level, fmt="json", stream=buf)
    return buf


def strings_in(obj: object) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from strings_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_in(v)


# --------------------------------------------------------------------------------------------
# Output


def test_json_line_shape() -> None:
    buf = json_logs()
    structlog.get_logger("hft.oms").info("order.accepted", order_id="o-1", qty=5, price=123450)
    [line] = lines(buf)
    assert set(line) == {"timestamp", "level", "logger", "event", "order_id", "qty", "price"}
    assert line["event"] == "order.accepted"
    assert line["level"] == "info"
    assert line["logger"] == "hft.oms"
    assert (line["order_id"], line["qty"], line["price"]) == ("o-1", 5, 123450)
    stamp = dt.datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == dt.timedelta(0)


def test_auto_format_is_json_off_a_tty_and_pretty_on_one() -> None:
    plain = io.StringIO()
    configure(stream=plain)
    structlog.get_logger("hft.x").warning("feed.lagging", behind_ms=40)
    assert lines(plain)[0]["event"] == "feed.lagging"

    tty = TTY()
    configure(stream=tty)
    structlog.get_logger("hft.x").warning("feed.lagging", behind_ms=40)
    text = tty.getvalue()
    assert "feed.lagging" in text
    assert "behind_ms" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_console_format_on_request() -> None:
    buf = io.StringIO()
    configure(fmt="console", stream=buf)
    structlog.get_logger("hft.y").info("session.opened", broker="kite")
    text = buf.getvalue()
    assert "session.opened" in text
    assert "broker=kite" in text
    assert "[hft.y]" in text
    assert "\x1b[" not in text  # no colours when the stream is not a terminal


def test_stdlib_logging_comes_out_in_the_same_format() -> None:
    buf = json_logs()
    logging.getLogger("urllib3.pool").warning("retrying %s after %d errors", "host", 2)
    [line] = lines(buf)
    assert line["event"] == "retrying host after 2 errors"
    assert line["logger"] == "urllib3.pool"
    assert line["level"] == "warning"
    assert "timestamp" in line


def test_level_filters_both_structlog_and_stdlib() -> None:
    buf = json_logs(level="warning")
    structlog.get_logger("hft").info("quiet.info")
    logging.getLogger("lib").info("quiet too")
    structlog.get_logger("hft").warning("loud.warning")
    logging.getLogger("lib").error("loud too")
    assert [line["event"] for line in lines(buf)] == ["loud.warning", "loud too"]


def test_configure_is_idempotent() -> None:
    first = io.StringIO()
    configure(stream=first)
    configure(stream=first)
    second = io.StringIO()
    configure(fmt="json", stream=second)
    structlog.get_logger("hft").info("once.only")
    assert first.getvalue() == ""
    assert [line["event"] for line in lines(second)] == ["once.only"]
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_hft_logging", False)]
    assert len(ours) == 1


def test_configure_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="level"):
        configure(level="chatty")
    with pytest.raises(ValueError, match="fmt"):
        configure(fmt="xml")  # type: ignore[arg-type]


def test_exceptions_are_rendered_as_text() -> None:
    buf = json_logs()
    try:
        raise NetworkError("peer reset", code="conn_reset")
    except NetworkError:
        structlog.get_logger("hft").exception("broker.call_failed")
    [line] = lines(buf)
    assert line["level"] == "error"
    assert "Traceback" in line["exception"]
    assert "conn_reset: peer reset" in line["exception"]


# --------------------------------------------------------------------------------------------
# Correlation ids


def test_correlation_id_is_bound_for_the_block_and_restored() -> None:
    assert correlation_id() is None
    with bind_correlation_id("req-1") as outer:
        assert outer == "req-1"
        assert correlation_id() == "req-1"
        with bind_correlation_id() as inner:
            assert correlation_id() == inner != "req-1"
        assert correlation_id() == "req-1"
    assert correlation_id() is None


def test_generated_ids_are_short_url_safe_and_distinct() -> None:
    ids = set()
    for _ in range(200):
        with bind_correlation_id() as cid:
            assert re.fullmatch(r"[A-Za-z0-9_-]{12}", cid)
            ids.add(cid)
    assert len(ids) == 200


@pytest.mark.parametrize("bad", ["", "has space", "new\nline", "x" * 129, "<script>"])
def test_supplied_ids_must_be_inert(bad: str) -> None:
    with pytest.raises(ValueError, match="correlation id"), bind_correlation_id(bad):
        pass


def test_every_line_in_the_block_carries_the_id() -> None:
    buf = json_logs()
    log = structlog.get_logger("hft.http")
    log.info("request.outside")
    with bind_correlation_id("abc-123"):
        log.info("request.received")
        logging.getLogger("sqlalchemy").warning("slow query")
    log.info("request.after")
    got = [(line["event"], line.get("correlation_id")) for line in lines(buf)]
    assert got == [
        ("request.outside", None),
        ("request.received", "abc-123"),
        ("slow query", "abc-123"),
        ("request.after", None),
    ]


@pytest.mark.anyio
async def test_correlation_id_flows_into_child_tasks() -> None:
    buf = json_logs()
    seen: dict[str, str | None] = {}

    async def child(name: str) -> None:
        await anyio.lowlevel.checkpoint()
        seen[name] = correlation_id()
        structlog.get_logger("hft.child").info("child.ran", name=name)
        with bind_correlation_id(f"{name}-own"):
            await anyio.lowlevel.checkpoint()

    with bind_correlation_id("parent-1"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child, "a")
            tg.start_soon(child, "b")
        # A child's own binding does not leak back into the parent.
        assert correlation_id() == "parent-1"
    assert seen == {"a": "parent-1", "b": "parent-1"}
    assert {line["correlation_id"] for line in lines(buf)} == {"parent-1"}


# --------------------------------------------------------------------------------------------
# Redaction


def run(**event: object) -> dict[str, Any]:
    return dict(redact(None, "info", dict(event)))


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "apikey",
        "API_KEY",
        "X-Api-Key",
        "secret",
        "secret_key",
        "secretKey",
        "password",
        "new_password",
        "passwd",
        "token",
        "access_token",
        "accessToken",
        "refresh_token",
        "request_token",
        "authorization",
        "Authorization",
        "checksum",
        "appKey",
        "kite_api_key",
        "xts_secret_key",
        "client_secret",
        "totp_secret",
        "enctoken",
        "private_key",
        "cookie",
        "X-Kite-Checksum",
    ],
)
def test_sensitive_keys_are_masked(key: str) -> None:
    assert run(event="x", **{key: "s3cr3t-value"})[key] == "***"


@pytest.mark.parametrize(
    "key",
    ["instrument_token", "tokens", "token_count", "order_id", "secretary", "password_policy"],
)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert run(event="x", **{key: 256265})[key] == 256265


def test_nested_values_are_masked_without_touching_the_callers_data() -> None:
    payload = {
        "status": "success",
        "data": {"access_token": "at-1", "user_id": "AB1234", "meta": [{"password": "p"}]},
        "rows": ({"apiKey": "k"}, "plain"),
    }
    out = run(event="broker.response", payload=payload)
    assert out["payload"] == {
        "status": "success",
        "data": {"access_token": "***", "user_id": "AB1234", "meta": [{"password": "***"}]},
        "rows": [{"apiKey": "***"}, "plain"],
    }
    assert payload["data"]["access_token"] == "at-1"  # type: ignore[index]


def test_secret_objects_render_as_stars() -> None:
    s = Secret("the-real-api-key")
    out = run(event="x", key_holder=s, nested={"list": [s]})
    assert out["key_holder"] == "***"
    assert out["nested"] == {"list": ["***"]}


def test_live_secret_values_are_scrubbed_from_any_text() -> None:
    s = Secret("q7Zr9pLw3xN")
    out = run(
        event=f"login failed for q7Zr9pLw3xN at {s}",
        note="url was https://api.example/?k=q7Zr9pLw3xN&x=1",
        deep={"a": ["prefix-q7Zr9pLw3xN-suffix"]},
    )
    assert "q7Zr9pLw3xN" not in repr(out)
    assert out["event"] == "login failed for *** at Secret('***')"
    assert out["deep"] == {"a": ["prefix-***-suffix"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /session?access_token=XYZ123&x=1", "GET /session?access_token=***&x=1"),
        ("api_key:XYZ", "api_key:***"),
        ("api_key = XYZ, next", "api_key = ***, next"),
        ('{"password": "hunter2", "user": "u"}', '{"password": "***", "user": "u"}'),
        ("{'request_token': 'rt9'}", "{'request_token': '***'}"),
        ("Authorization: token abc:def", "Authorization: token ***"),
        ("'Authorization': 'token abc:def'", "'Authorization': 'token ***'"),
        ("sent with token abc:def today", "sent with token *** today"),
        ("header Bearer eyJhbGciOi.xyz-_w", "header Bearer ***"),
        ("postgresql://hft:pa55word@db:5432/hft", "postgresql://hft:***@db:5432/hft"),
        ("x-kite-checksum=deadbeef", "x-kite-checksum=***"),
        ("instrument_token=256265 last_price=100", "instrument_token=256265 last_price=100"),
        ("order.placed", "order.placed"),
    ],
)
def test_credential_patterns_are_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == expected
    assert run(event=text)["event"] == expected


def test_short_secrets_are_not_scrubbed() -> None:
    # A 3-character credential protects nothing, and masking it everywhere would wreck the logs.
    s = Secret("abc")
    assert scrub("abcdef") == "abcdef"
    assert s.reveal() == "abc"


def test_exception_text_is_scrubbed_in_the_output() -> None:
    buf = json_logs()
    token = Secret("atk-4f9c2e7b1d")
    try:
        raise NetworkError(f"refused {token.reveal()} with Authorization: token k:v")
    except NetworkError:
        structlog.get_logger("hft.kite").exception("broker.failed", access_token=token)
    out = buf.getvalue()
    assert "atk-4f9c2e7b1d" not in out
    assert "token k:v" not in out
    [line] = lines(buf)
    assert line["access_token"] == "***"
    assert "refused *** with Authorization: token ***" in line["exception"]


def test_stdlib_records_are_scrubbed_too() -> None:
    buf = json_logs()
    pw = Secret("db-pa55-w0rd")
    logging.getLogger("sqlalchemy.engine").warning("connect failed %s", f"pw={pw.reveal()}")
    try:
        raise RuntimeError(pw.reveal())
    except RuntimeError:
        logging.getLogger("lib").exception("boom")
    assert "db-pa55-w0rd" not in buf.getvalue()
    assert [line["event"] for line in lines(buf)] == ["connect failed pw=***", "boom"]


def test_console_output_is_scrubbed_too() -> None:
    buf = TTY()
    configure(stream=buf)
    s = Secret("console-secret-1")
    try:
        raise ValueError("console-secret-1")
    except ValueError:
        structlog.get_logger("hft").exception("x.failed", password="pw", note=s)
    text = buf.getvalue()
    assert "console-secret-1" not in text
    assert "pw" not in text.replace("password", "")


def test_odd_values_are_rendered_through_a_scrubbed_repr() -> None:
    class Creds:
        def __repr__(self) -> str:
            return "Creds(api_key=k-123)"

    out = run(event="x", creds=Creds(), err=ValueError("token=abc"), n=None, ok=True)
    assert out == {
        "event": "x",
        "creds": "Creds(api_key=***)",
        "err": "token=***",
        "n": None,
        "ok": True,
    }


def test_deep_or_cyclic_structures_are_cut_off() -> None:
    loop: list[object] = []
    loop.append(loop)
    out = run(event="x", loop=loop)
    depth = 0
    node = out["loop"]
    while isinstance(node, list):
        node, depth = node[0], depth + 1
    assert node == "..."
    assert depth == 16


_secret_text = st.text(min_size=4, max_size=40).filter(lambda s: s.strip() == s and s != "")


@settings(max_examples=200)
@given(secret=_secret_text, before=st.text(max_size=20), after=st.text(max_size=20))
def test_a_live_secret_never_reaches_the_output(secret: str, before: str, after: str) -> None:
    s = Secret(secret)
    buf = json_logs()
    text = before + secret + after
    log = structlog.get_logger("hft.prop")
    log.info(text, field=text, nested={"k": [text, {"v": text}]}, obj=s)
    try:
        raise NetworkError(text)
    except NetworkError:
        log.exception("prop.failed")
    logging.getLogger("lib").warning("%s", text)
    for line in lines(buf):
        for value in strings_in(line):
            assert secret not in value
    assert s  # keeps the Secret alive until here


@given(secret=st.text(min_size=4, max_size=30), noise=st.text(max_size=30))
def test_scrub_removes_every_occurrence(secret: str, noise: str) -> None:
    s = Secret(secret)
    assert secret not in scrub(noise.join([secret, secret, ""]) + noise[::-1])
    assert s
