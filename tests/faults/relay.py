#!/usr/bin/env python3
"""A TCP relay that injects faults into iWARP connections (tests/faults).

    relay.py --listen IP:PORT --connect IP:PORT --mode MODE [--after BYTES] [...]

Every accepted connection gets its own upstream connection; bytes are forwarded both ways.
After --after bytes went client->server (server->client for corrupt s2c), the fault of
--mode happens once per connection:

    pass       nothing (a plain relay)
    delay      every chunk is forwarded --delay-ms later (from the start, not only after --after)
    stall      stop reading both sides for --seconds, then go on
    blackhole  stop reading both sides for good; a close on one side is passed on (RST)
    reset      close both sides with RST
    halfopen   RST to the server; the client side stays open and is never read again
    corrupt    flip one byte inside the payload of the next FPDU of --direction that carries
               at least --min-ulpdu bytes (MPA framing is followed: request/reply frames,
               ULPDU_Length, pad, CRC; markers are not supported). The receiver of that FPDU
               must detect it (CRC) or the application must (no CRC).

With --mode corrupt the relay also decodes the FPDUs of both directions after the fault and
reports any TERMINATE it sees (layer/etype/ecode). Output: JSON lines on stdout ("ready",
"accepted", "fault", "terminate", "closed"). Standard library only.
"""
import argparse
import heapq
import json
import os
import select
import socket
import struct
import sys
import time

C2S, S2C = 0, 1


def now_ms():
    return int(time.time() * 1000)


def emit(**kw):
    kw.setdefault("t_ms", now_ms())
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class MpaStream:
    """Follows the MPA framing of one direction: start frame, then FPDUs. feed() takes bytes
    and returns the bytes to forward (complete units; a partial unit waits)."""

    def __init__(self, direction, conn):
        self.dir = direction
        self.conn = conn
        self.buf = bytearray()
        self.frame_done = False
        self.fpdus = 0

    def feed(self, data):
        self.buf += data
        out = bytearray()
        while True:
            unit = self._next_unit()
            if unit is None:
                break
            out += unit
        return bytes(out)

    def _next_unit(self):
        b = self.buf
        if not self.frame_done:
            if len(b) < 20:
                return None
            pd_len = struct.unpack(">H", b[18:20])[0]
            if len(b) < 20 + pd_len:
                return None
            frame = bytes(b[:20 + pd_len])
            del b[:20 + pd_len]
            self.frame_done = True
            self.conn.on_frame(self.dir, frame)
            return frame
        if self.conn.crc is None:
            # FPDUs before the other side's frame told us whether CRC is on: forward as is
            # (only happens with peers that send early, not with softiwarp).
            unit = bytes(b)
            b.clear()
            return unit or None
        if len(b) < 2:
            return None
        ulen = struct.unpack(">H", b[0:2])[0]
        total = 2 + ulen
        total += (4 - total % 4) % 4
        if self.conn.crc:
            total += 4
        if len(b) < total:
            return None
        fpdu = bytearray(b[:total])
        del b[:total]
        self.fpdus += 1
        self.conn.on_fpdu(self.dir, fpdu, ulen)
        return bytes(fpdu)


class Conn:
    def __init__(self, relay, cl, sv, n):
        self.r = relay
        self.n = n
        self.sock = [cl, sv]          # index = side the bytes come from: C2S reads cl
        self.out = [bytearray(), bytearray()]  # pending output to cl (S2C) / sv (C2S)
        self.eof = [False, False]
        self.closed = False
        self.c2s_bytes = 0
        self.s2c_bytes = 0
        self.fault_done = False
        self.reading = True           # stall/blackhole stop reading
        self.stall_until = 0.0
        self.crc = None
        self.markers = False
        self.corrupted = False
        self.mpa = [MpaStream(C2S, self), MpaStream(S2C, self)] if relay.a.mode == "corrupt" else None
        self.client_gone = False      # halfopen: the server side was reset

    # --- MPA decoding (corrupt mode) ---
    def on_frame(self, direction, frame):
        flags = frame[16]
        if direction == S2C:
            self.crc = bool(flags & 0x40)
            self.markers = bool(flags & 0x80)
            emit(event="mpa_reply", conn=self.n, crc=self.crc, markers=self.markers,
                 rev=frame[17], reject=bool(flags & 0x20))
        else:
            emit(event="mpa_request", conn=self.n, crc_requested=bool(flags & 0x40),
                 markers=bool(flags & 0x80), rev=frame[17])

    def on_fpdu(self, direction, fpdu, ulen):
        a = self.r.a
        if ulen >= 18 and fpdu[2] & 0x80 == 0 and fpdu[3] & 0x0F == 0x7:
            # untagged, RDMAP opcode 7 = TERMINATE; control word after the 18-byte header
            ctl = fpdu[2 + 18:2 + 18 + 4]
            if len(ctl) == 4:
                emit(event="terminate", conn=self.n,
                     dir="c2s" if direction == C2S else "s2c",
                     layer=ctl[0] >> 4, etype=ctl[0] & 0xF, ecode=ctl[1])
        if (a.mode == "corrupt" and not self.corrupted and self.fault_armed()
                and (direction == C2S) == (a.direction == "c2s") and ulen >= a.min_ulpdu
                and not self.markers):
            off = 2 + min(ulen - 1, a.corrupt_offset)
            fpdu[off] ^= 0x5A
            self.corrupted = True
            self.fault_done = True
            tagged = bool(fpdu[2] & 0x80)
            emit(event="fault", mode="corrupt", conn=self.n, dir=a.direction, ulpdu_len=ulen,
                 offset_in_ulpdu=off - 2, tagged=tagged, opcode=fpdu[3] & 0x0F, crc=self.crc,
                 c2s_bytes=self.c2s_bytes)

    def fault_armed(self):
        # corrupt s2c counts the server's bytes, everything else the client's
        a = self.r.a
        if a.mode == "corrupt" and a.direction == "s2c":
            return self.s2c_bytes >= a.after
        return self.c2s_bytes >= a.after

    # --- plumbing ---
    def fileno_side(self, fd):
        return 0 if self.sock[0] and self.sock[0].fileno() == fd else 1

    def close(self, why, rst=False):
        if self.closed:
            return
        self.closed = True
        for s in self.sock:
            if s is None:
                continue
            self.r.unregister(s)
            if rst:
                rst_close(s)
            else:
                try:
                    s.close()
                except OSError:
                    pass
        emit(event="closed", conn=self.n, why=why, c2s_bytes=self.c2s_bytes,
             s2c_bytes=self.s2c_bytes)

    def trigger(self):
        """The non-corrupt faults, once c2s_bytes passed --after."""
        a = self.r.a
        if self.fault_done or not self.fault_armed() or a.mode in ("pass", "delay", "corrupt"):
            return
        self.fault_done = True
        emit(event="fault", mode=a.mode, conn=self.n, c2s_bytes=self.c2s_bytes,
             s2c_bytes=self.s2c_bytes)
        if a.mode == "stall":
            self.reading = False
            self.stall_until = time.monotonic() + a.seconds
        elif a.mode == "blackhole":
            self.reading = False
            self.stall_until = float("inf")
        elif a.mode == "reset":
            self.close("reset", rst=True)
        elif a.mode == "halfopen":
            sv = self.sock[1]
            self.r.unregister(sv)
            rst_close(sv)
            self.sock[1] = None
            self.reading = False
            self.stall_until = float("inf")
            self.client_gone = True


class Relay:
    def __init__(self, a):
        self.a = a
        self.poll = select.poll()
        self.fdmap = {}
        self.conns = 0
        self.delayed = []   # heap of (due, seq, conn, direction, data)
        self.seq = 0
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(addr(a.listen))
        self.ls.listen(64)
        self.ls.setblocking(False)
        self.poll.register(self.ls, select.POLLIN)

    def register(self, sock, conn, mask):
        self.fdmap[sock.fileno()] = (sock, conn)
        self.poll.register(sock, mask)

    def modify(self, sock, mask):
        try:
            self.poll.modify(sock, mask)
        except (OSError, ValueError, KeyError):
            pass

    def unregister(self, sock):
        try:
            fd = sock.fileno()
        except OSError:
            return
        if fd < 0:
            return
        self.fdmap.pop(fd, None)
        try:
            self.poll.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def accept(self):
        try:
            cl, peer = self.ls.accept()
        except BlockingIOError:
            return
        sv = socket.create_connection(addr(self.a.connect), timeout=5)
        for s in (cl, sv):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conns += 1
        c = Conn(self, cl, sv, self.conns)
        self.register(cl, c, select.POLLIN | select.POLLRDHUP)
        self.register(sv, c, select.POLLIN | select.POLLRDHUP)
        emit(event="accepted", conn=c.n, peer="%s:%d" % peer)
        if self.a.only_conn and c.n != self.a.only_conn:
            c.fault_done = c.corrupted = True   # this one is left alone
        elif self.a.after == 0:
            c.trigger()                         # before the first byte (the MPA request)

    def update(self, c):
        for side in (0, 1):
            s = c.sock[side]
            if s is None or c.closed:
                continue
            m = 0
            if not c.eof[side]:
                m |= select.POLLRDHUP
                if c.reading:
                    m |= select.POLLIN
            if c.out[side]:
                m |= select.POLLOUT
            self.modify(s, m)

    def queue(self, c, direction, data):
        """Bytes read from side `direction` go to the other side."""
        if not data:
            return
        if self.a.mode == "delay":
            self.seq += 1
            heapq.heappush(self.delayed, (time.monotonic() + self.a.delay_ms / 1000.0,
                                          self.seq, c, direction, data))
            return
        c.out[1 - direction] += data
        self.flush(c, 1 - direction)

    def flush(self, c, side):
        s = c.sock[side]
        if s is None or c.closed:
            c.out[side].clear()
            return
        while c.out[side]:
            try:
                n = s.send(c.out[side])
            except BlockingIOError:
                break
            except OSError:
                self.drain_and_close(c, side)
                return
            del c.out[side][:n]
        if not c.out[side] and c.eof[1 - side]:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.update(c)

    def drain_and_close(self, c, side):
        """Sending towards `side` failed (it reset): what it sent before (a TERMINATE, say)
        still goes to the other side, then both close."""
        s, other = c.sock[side], c.sock[1 - side]
        while s is not None:
            try:
                data = s.recv(65536)
            except OSError:
                break
            if not data:
                break
            if c.mpa is not None:
                data = c.mpa[side].feed(data)
            c.out[1 - side] += data
        if other is not None and c.out[1 - side]:
            try:
                other.settimeout(2)
                other.sendall(bytes(c.out[1 - side]))
            except OSError:
                pass
        c.close("%s reset" % ("client" if side == C2S else "server"))

    def on_readable(self, c, side):
        s = c.sock[side]
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return
        except ConnectionResetError:
            self.on_hup(c, side, reset=True)
            return
        except OSError:
            self.on_hup(c, side, reset=True)
            return
        if not data:
            self.on_hup(c, side, reset=False)
            return
        if side == C2S:
            c.c2s_bytes += len(data)
        else:
            c.s2c_bytes += len(data)
        if c.mpa is not None:
            data = c.mpa[side].feed(data)
        self.queue(c, side, data)
        if side == C2S:
            c.trigger()

    def on_hup(self, c, side, reset):
        if c.closed:
            return
        who = "client" if side == C2S else "server"
        if not c.reading or reset or c.client_gone:
            # stalled relays pass a close on at once, as a reset (unread data is dropped)
            c.close("%s %s" % (who, "reset" if reset else "closed"), rst=True)
            return
        c.eof[side] = True
        if c.eof[0] and c.eof[1]:
            c.close("both closed")
            return
        self.flush(c, 1 - side)
        self.update(c)

    def run(self):
        emit(event="ready", listen=self.a.listen, connect=self.a.connect, mode=self.a.mode,
             after=self.a.after, pid=os.getpid())
        while True:
            timeout = 100
            if self.delayed:
                timeout = max(0, min(timeout, int((self.delayed[0][0] - time.monotonic()) * 1000)))
            for fd, ev in self.poll.poll(timeout):
                if fd == self.ls.fileno():
                    self.accept()
                    continue
                ent = self.fdmap.get(fd)
                if not ent:
                    continue
                s, c = ent
                if c.closed:
                    continue
                side = 0 if s is c.sock[0] else 1
                if ev & select.POLLOUT:
                    self.flush(c, side)
                if c.closed:
                    continue
                if ev & select.POLLIN and c.reading:
                    self.on_readable(c, side)
                elif ev & (select.POLLHUP | select.POLLERR | select.POLLRDHUP):
                    if c.reading and not c.eof[side]:
                        self.on_readable(c, side)
                    else:
                        self.on_hup(c, side, reset=bool(ev & select.POLLERR))
                    if not c.closed:
                        self.update(c)
            tnow = time.monotonic()
            while self.delayed and self.delayed[0][0] <= tnow:
                _, _, c, direction, data = heapq.heappop(self.delayed)
                if not c.closed:
                    c.out[1 - direction] += data
                    self.flush(c, 1 - direction)
            for _, c in list(self.fdmap.values()):
                if not c.reading and c.stall_until <= tnow and not c.closed:
                    c.reading = True
                    emit(event="resume", conn=c.n)
                    self.update(c)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--connect", required=True)
    p.add_argument("--mode", default="pass",
                   choices=["pass", "delay", "stall", "blackhole", "reset", "halfopen",
                            "corrupt"])
    p.add_argument("--after", type=int, default=0, help="client->server bytes before the fault")
    p.add_argument("--seconds", type=float, default=3.0, help="stall duration")
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--direction", choices=["c2s", "s2c"], default="c2s")
    p.add_argument("--min-ulpdu", type=int, default=256)
    p.add_argument("--only-conn", type=int, default=0,
                   help="fault only the N-th accepted connection (1-based); 0 = all")
    p.add_argument("--corrupt-offset", type=int, default=100,
                   help="offset inside the ULPDU of the flipped byte (past DDP/RDMAP headers)")
    a = p.parse_args()
    try:
        Relay(a).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
