"""gRPC over a hand-rolled minimal HTTP/2 layer (asyncio Protocol), add_sub floor.

  python rawh2_server.py PORT [--loop asyncio|uvloop] [--no-hcache]

Frames are parsed/built directly with int.from_bytes / bytes joins; only HPACK
*decoding* of request headers uses the `hpack` package (pip install h2 brings it),
and it is skipped entirely when a request's header block is byte-identical to an
earlier one and the HPACK dynamic table has not changed since (the gRPC C-core
client sends fully indexed, identical blocks for repeated calls) -- --no-hcache
turns that cache off. Response headers/trailers are constant HPACK blocks that
never touch the dynamic table (indexed static :status 200, literals without
indexing), so the encoder is stateless.

Implements: client preface, SETTINGS (+ACK, INITIAL_WINDOW_SIZE/MAX_FRAME_SIZE from
the peer), PING ack, WINDOW_UPDATE (send-side flow control with queueing),
receive-side window replenishment, HEADERS+CONTINUATION, PADDED/PRIORITY flags,
RST_STREAM, GOAWAY; unary RPCs and the bidi ModelStreamInfer.
Not implemented (a floor, not production): TLS, compression, deadlines, server
GOAWAY on shutdown, MAX_CONCURRENT_STREAMS enforcement, header size limits.
"""
import argparse
import asyncio
import os
import sys
from collections import deque

from hpack import Decoder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BIG = (1 << 31) - 1
PREFIX = b"/" + common.SERVICE.encode() + b"/"
RAW = {k.encode(): v for k, v in common.RAW.items()}
STREAM = b"ModelStreamInfer"
HCACHE = True


def fh(length, ftype, flags, sid):
    return length.to_bytes(3, "big") + bytes((ftype, flags)) + sid.to_bytes(4, "big")


def hp_str(s: bytes) -> bytes:  # HPACK string literal, no Huffman (len < 127)
    assert len(s) < 127
    return bytes((len(s),)) + s


# :status 200 (static 8) + content-type (static name 31, literal w/o indexing)
RESP_HBLOCK = b"\x88" + b"\x0f\x10" + hp_str(b"application/grpc")
OK_TBLOCK = b"\x00" + hp_str(b"grpc-status") + hp_str(b"0")
UNIMPL_HBLOCK = RESP_HBLOCK + b"\x00" + hp_str(b"grpc-status") + hp_str(b"12") + \
    b"\x00" + hp_str(b"grpc-message") + hp_str(b"unimplemented")
RESP_H = len(RESP_HBLOCK).to_bytes(3, "big") + b"\x01\x04"      # HEADERS, END_HEADERS
OK_T = len(OK_TBLOCK).to_bytes(3, "big") + b"\x01\x05"          # HEADERS, END_HEADERS|END_STREAM
UNIMPL_H = len(UNIMPL_HBLOCK).to_bytes(3, "big") + b"\x01\x05"
SERVER_PREFACE = (fh(12, 4, 0, 0) + (4).to_bytes(2, "big") + BIG.to_bytes(4, "big")
                  + (3).to_bytes(2, "big") + (1024).to_bytes(4, "big")      # SETTINGS
                  + fh(4, 8, 0, 0) + (BIG - 65535).to_bytes(4, "big"))     # conn WINDOW_UPDATE
SETTINGS_ACK = fh(0, 4, 1, 0)


class Conn(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        self.buf = bytearray()
        self.preface = False
        self.dec = Decoder()
        self.dyn = self.dec.header_table.dynamic_entries
        self.hcache = {}
        self.hstate = (0, 0)
        self.streams = {}           # sid -> [method, bytearray, consumed]
        self.hdr_sid = 0            # stream awaiting CONTINUATION
        self.hdr_block = b""
        self.hdr_end_stream = False
        self.recv_consumed = 0
        self.send_win = 65535
        self.init_win = 65535
        self.win = {}               # sid -> send window (only streams with pending/open data)
        self.max_frame = 16384
        self.pending = deque()      # (sid, bytes DATA payload, trailer bytes or b"")
        t.write(SERVER_PREFACE)

    # ------------------------------------------------------------ send side
    def send_msg(self, out, sid, payload, trailers):
        """Queue DATA(payload) (+ trailers) respecting flow control."""
        n = len(payload)
        w = self.win.get(sid, self.init_win)
        if not self.pending and n <= self.send_win and n <= w and n <= self.max_frame:
            self.send_win -= n
            self.win[sid] = w - n
            out.append(n.to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big"))
            out.append(payload)
            if trailers:
                out.append(trailers)
                self.win.pop(sid, None)
            return
        self.pending.append([sid, payload, trailers])
        self.flush(out)

    def flush(self, out):
        while self.pending:
            item = self.pending[0]
            sid, payload, trailers = item
            w = self.win.get(sid, self.init_win)
            n = min(len(payload), self.send_win, w, self.max_frame)
            if n <= 0 and payload:
                return
            if n:
                out.append(n.to_bytes(3, "big") + b"\x00\x00" + sid.to_bytes(4, "big"))
                out.append(payload[:n])
                self.send_win -= n
                self.win[sid] = w - n
                item[1] = payload = payload[n:]
            if not payload:
                if trailers:
                    out.append(trailers)
                    self.win.pop(sid, None)
                self.pending.popleft()

    # --------------------------------------------------------- receive side
    def data_received(self, data):
        buf = self.buf
        buf += data
        pos = 0
        if not self.preface:
            if len(buf) < 24:
                return
            if bytes(buf[:24]) != PREFACE:
                self.t.close()
                return
            self.preface = True
            pos = 24
        out = []
        end = len(buf)
        streams = self.streams
        while end - pos >= 9:
            length = int.from_bytes(buf[pos:pos + 3], "big")
            if end - pos < 9 + length:
                break
            ftype = buf[pos + 3]
            flags = buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            p0 = pos + 9
            pos = p0 + length
            if ftype == 0:  # DATA
                self.recv_consumed += length
                st = streams.get(sid)
                if st is not None:
                    a, b = p0, pos
                    if flags & 0x8:
                        a += 1
                        b -= buf[p0]
                    st[1] += buf[a:b]
                    st[2] += length
                    if st[0] == STREAM:
                        self.stream_msgs(out, sid, st)
                        if st[2] > (1 << 30):
                            out.append(fh(4, 8, 0, sid) + st[2].to_bytes(4, "big"))
                            st[2] = 0
                    if flags & 1:
                        self.end_stream(out, sid)
            elif ftype == 1 or ftype == 9:  # HEADERS / CONTINUATION
                a, b = p0, pos
                if ftype == 1:
                    if flags & 0x8:
                        a += 1
                        b -= buf[p0]
                    if flags & 0x20:
                        a += 5
                    self.hdr_sid = sid
                    self.hdr_block = bytes(buf[a:b])
                    self.hdr_end_stream = bool(flags & 1)
                else:
                    self.hdr_block += bytes(buf[a:b])
                if flags & 0x4:
                    self.headers(out, self.hdr_sid, self.hdr_block, self.hdr_end_stream)
            elif ftype == 8:  # WINDOW_UPDATE
                inc = int.from_bytes(buf[p0:p0 + 4], "big") & 0x7FFFFFFF
                if sid == 0:
                    self.send_win += inc
                else:
                    self.win[sid] = self.win.get(sid, self.init_win) + inc
                if self.pending:
                    self.flush(out)
            elif ftype == 4:  # SETTINGS
                if not flags & 1:
                    for i in range(p0, pos, 6):
                        ident = int.from_bytes(buf[i:i + 2], "big")
                        val = int.from_bytes(buf[i + 2:i + 6], "big")
                        if ident == 4:
                            delta = val - self.init_win
                            self.init_win = val
                            for k in self.win:
                                self.win[k] += delta
                        elif ident == 5:
                            self.max_frame = val
                    out.append(SETTINGS_ACK)
                    if self.pending:
                        self.flush(out)
            elif ftype == 6:  # PING
                if not flags & 1:
                    out.append(fh(8, 6, 1, 0) + bytes(buf[p0:pos]))
            elif ftype == 3:  # RST_STREAM
                streams.pop(sid, None)
                self.win.pop(sid, None)
                if self.pending:
                    self.pending = deque(x for x in self.pending if x[0] != sid)
            elif ftype == 7:  # GOAWAY
                self.t.close()
                return
            # PRIORITY (2) and unknown frame types are ignored
        if pos:
            del buf[:pos]
        if self.recv_consumed > (1 << 30):
            out.append(fh(4, 8, 0, 0) + self.recv_consumed.to_bytes(4, "big"))
            self.recv_consumed = 0
        if out:
            self.t.write(b"".join(out))

    def headers(self, out, sid, block, end_stream):
        path = None
        if HCACHE:
            dyn = self.dyn
            state = (len(dyn), id(dyn[0]) if dyn else 0)
            if state != self.hstate:
                self.hcache.clear()
                self.hstate = state
            path = self.hcache.get(block)
        if path is None:
            hdrs = self.dec.decode(block, raw=True)
            path = b""
            for k, v in hdrs:
                if k == b":path":
                    path = v
                    break
            if HCACHE:
                dyn = self.dyn
                state = (len(dyn), id(dyn[0]) if dyn else 0)
                if state == self.hstate:   # decoding did not change the table: cacheable
                    self.hcache[block] = path
                else:
                    self.hcache.clear()
                    self.hstate = state
        if sid in self.streams:  # trailers from the client: ignore
            if end_stream:
                self.end_stream(out, sid)
            return
        method = path[len(PREFIX):] if path.startswith(PREFIX) else b""
        sidb = sid.to_bytes(4, "big")
        if method != STREAM and method not in RAW:
            out.append(UNIMPL_H + sidb + UNIMPL_HBLOCK)
            return
        self.streams[sid] = [method, bytearray(), 0]
        if method == STREAM:
            out.append(RESP_H + sidb + RESP_HBLOCK)
        if end_stream:
            self.end_stream(out, sid)

    def stream_msgs(self, out, sid, st):
        b = st[1]
        while len(b) >= 5:
            n = int.from_bytes(b[1:5], "big")
            if len(b) < 5 + n:
                break
            m = bytes(b[5:5 + n])
            del b[:5 + n]
            r = common.stream_wrap(common.infer_raw(m))
            self.send_msg(out, sid, b"\x00" + len(r).to_bytes(4, "big") + r, b"")

    def end_stream(self, out, sid):
        st = self.streams.pop(sid, None)
        if st is None:
            return
        sidb = sid.to_bytes(4, "big")
        if st[0] == STREAM:
            self.send_msg(out, sid, b"", OK_T + sidb + OK_TBLOCK)
            return
        b = st[1]
        msg = bytes(b[5:5 + int.from_bytes(b[1:5], "big")]) if len(b) >= 5 else b""
        r = RAW[st[0]](msg)
        out.append(RESP_H + sidb + RESP_HBLOCK)
        self.send_msg(out, sid, b"\x00" + len(r).to_bytes(4, "big") + r, OK_T + sidb + OK_TBLOCK)


async def main(port):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Conn, "127.0.0.1", port)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    ap.add_argument("--no-hcache", action="store_true")
    a = ap.parse_args()
    HCACHE = not a.no_hcache
    if a.loop == "uvloop":
        import uvloop
        uvloop.install()
    asyncio.run(main(a.port))
