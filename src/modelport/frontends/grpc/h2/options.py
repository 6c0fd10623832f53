"""H2Options: the h2 stack's limits and keepalive policy, built once from the server's settings.

Every gRPC server option of the settings has a meaning here (message sizes, keepalive pings and
their timeout, the ping abuse policy, connection age); HTTP/2 windows and frame sizes are fixed
choices of this stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelport.config.settings import ServerSettings

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class H2Options:
    """Limits of one server's connections (sizes in bytes, times in seconds)."""

    receive_limit: int
    send_limit: int
    max_streams: int = 1024  # SETTINGS_MAX_CONCURRENT_STREAMS
    stream_window: int = 8 * MIB  # SETTINGS_INITIAL_WINDOW_SIZE: a stream's unread requests
    connection_window: int = 64 * MIB
    max_frame: int = MIB  # SETTINGS_MAX_FRAME_SIZE: the largest DATA frame a client may send
    outbox_limit: int = 64 * MIB  # queued response bytes past which new streams are refused
    stream_bound: int = 4 * MIB  # queued bytes past which a streaming call's handler waits
    keepalive_time: float = 7200.0  # a PING after this long without one (0: never)
    keepalive_timeout: float = 20.0  # the connection closes when its PING is not answered in time
    permit_without_calls: bool = False  # clients may ping while no call is in flight
    max_pings_without_data: int = 2  # server PINGs between two data frames (0: no limit)
    min_ping_interval: float = 300.0  # clients pinging more often earn a strike
    max_ping_strikes: int = 2  # strikes past this end the connection (0: no limit)
    max_age: float = 0.0  # GOAWAY a connection this old (0: never)
    max_age_grace: float = 0.0  # then close it after this long (0: when its calls are done)


def h2_options(settings: ServerSettings) -> H2Options:
    """The settings' gRPC limits and keepalive options (ms -> s)."""
    return H2Options(
        receive_limit=settings.grpc_max_receive_message_size,
        send_limit=settings.grpc_max_send_message_size,
        keepalive_time=settings.grpc_keepalive_time / 1000,
        keepalive_timeout=settings.grpc_keepalive_timeout / 1000,
        permit_without_calls=settings.grpc_keepalive_permit_without_calls,
        max_pings_without_data=settings.grpc_http2_max_pings_without_data,
        min_ping_interval=settings.grpc_http2_min_recv_ping_interval_without_data / 1000,
        max_ping_strikes=settings.grpc_http2_max_ping_strikes,
        max_age=settings.grpc_max_connection_age / 1000,
        max_age_grace=settings.grpc_max_connection_age_grace / 1000,
    )
