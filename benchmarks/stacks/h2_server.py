"""gRPC over HTTP/2 in pure Python on the `h2` library (asyncio Protocol), add_sub floor.

  python h2_server.py PORT [--loop asyncio|uvloop]

Needs `pip install h2` (h2 4.x, hpack, hyperframe). Implements the unary RPCs that
perf_analyzer / tritonclient use and ModelStreamInfer (bidi): request HEADERS with
:path /inference.GRPCInferenceService/<Method>, DATA with 5-byte length-prefixed
messages (compression flag must be 0), response HEADERS (:status 200,
content-type application/grpc), DATA, then trailing HEADERS with grpc-status.
No TLS, no compression, no deadlines, no cancellation handling beyond RST_STREAM.
"""
import argparse
import asyncio
import os
import sys

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.settings import SettingCodes

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

CFG = H2Configuration(client_side=False, header_encoding=None,
                      validate_outbound_headers=False, normalize_outbound_headers=False,
                      validate_inbound_headers=False, normalize_inbound_headers=False)
RESP_HEADERS = [(b":status", b"200"), (b"content-type", b"application/grpc")]
OK_TRAILERS = [(b"grpc-status", b"0")]
UNIMPL_TRAILERS = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                   (b"grpc-status", b"12"), (b"grpc-message", b"unimplemented")]
PREFIX = b"/" + common.SERVICE.encode() + b"/"
RAW = {k.encode(): v for k, v in common.RAW.items()}
STREAM = b"ModelStreamInfer"


def frame(msg: bytes) -> bytes:
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def split_messages(buf: bytearray):
    """Pop complete length-prefixed messages from buf."""
    out = []
    while len(buf) >= 5:
        n = int.from_bytes(buf[1:5], "big")
        if len(buf) < 5 + n:
            break
        out.append(bytes(buf[5:5 + n]))
        del buf[:5 + n]
    return out


class GrpcH2(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.conn = H2Connection(config=CFG)
        self.conn.local_settings = self.conn.local_settings  # keep defaults
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24,
                                   SettingCodes.MAX_CONCURRENT_STREAMS: 1024})
        self.conn.increment_flow_control_window(1 << 30)
        self.streams = {}  # stream id -> [method bytes, bytearray]
        transport.write(self.conn.data_to_send())

    def data_received(self, data):
        conn = self.conn
        try:
            events = conn.receive_data(data)
        except Exception:
            self.t.close()
            return
        for ev in events:
            tp = type(ev)
            if tp is DataReceived:
                sid = ev.stream_id
                st = self.streams.get(sid)
                if ev.flow_controlled_length:
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                if st is None:
                    continue
                st[1] += ev.data
                if st[0] == STREAM:
                    for m in split_messages(st[1]):
                        conn.send_data(sid, frame(common.stream_wrap(common.infer_raw(m))))
            elif tp is RequestReceived:
                sid = ev.stream_id
                path = b""
                for k, v in ev.headers:
                    if k == b":path":
                        path = v
                        break
                method = path[len(PREFIX):] if path.startswith(PREFIX) else b""
                if method != STREAM and method not in RAW:
                    conn.send_headers(sid, UNIMPL_TRAILERS, end_stream=True)
                    continue
                self.streams[sid] = [method, bytearray()]
                if method == STREAM:
                    conn.send_headers(sid, RESP_HEADERS)
            elif tp is StreamEnded:
                sid = ev.stream_id
                st = self.streams.pop(sid, None)
                if st is None:
                    continue
                if st[0] == STREAM:
                    conn.send_headers(sid, OK_TRAILERS, end_stream=True)
                    continue
                msgs = split_messages(st[1])
                resp = RAW[st[0]](msgs[0] if msgs else b"")
                conn.send_headers(sid, RESP_HEADERS)
                conn.send_data(sid, frame(resp))
                conn.send_headers(sid, OK_TRAILERS, end_stream=True)
            elif tp is StreamReset:
                self.streams.pop(ev.stream_id, None)
            elif tp is ConnectionTerminated:
                self.t.write(conn.data_to_send())
                self.t.close()
                return
        out = conn.data_to_send()
        if out:
            self.t.write(out)


async def main(port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(GrpcH2, "127.0.0.1", port)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(a.port))
