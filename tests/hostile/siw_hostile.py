#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""siw_hostile.py - a hostile iWARP peer (MPA / DDP / RDMAP), standard library only.

It speaks MPA (RFC 5044, RFC 6581 enhanced setup), DDP (RFC 5041) and RDMAP (RFC 5040) by
itself: its own CRC32c, FPDU builder, MPA request builder, MPA reply parser and TERMINATE
parser. Nothing here imports or calls softiwarp; it only knows the wire. It plays the MPA
initiator against any iWARP responder and runs scenarios that try to reach memory it was not
granted or to break the protocol state machine, and reports in JSON what it sent, the
TERMINATE it got back (layer/etype/ecode decoded), how TCP closed (FIN, RST or timeout) and
when.

Library use:   run_scenario(name, host, port, target, opts) -> dict
CLI use:       siw_hostile.py --host 127.0.0.1 --port P --scenario NAME \\
                   --stag 0x... --to 0x... --len N
               siw_hostile.py --port P --scenario NAME --server-log srv.jsonl
                   (against tests/hostile/hostile_server: the target region of the scenario is
                   looked up in the server's JSON lines for this connection)
               siw_hostile.py --list | --selftest

Every socket operation is bounded by a timeout.
"""

import argparse
import json
import socket
import struct
import sys
import time

# ---- CRC32c (Castagnoli, reflected polynomial 0x82F63B78) ------------------------------------


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC32c of data; crc continues a previous result (initial ~0, final inversion)."""
    c = crc ^ 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---- wire constants -----------------------------------------------------------------------------

MPA_KEY_REQ = b"MPA ID Req Frame"
MPA_KEY_REP = b"MPA ID Rep Frame"
MPA_FLAG_M = 0x80  # markers wanted in the stream the sender receives
MPA_FLAG_C = 0x40  # CRC
MPA_FLAG_R = 0x20  # reject (reply only)
MPA_FLAG_H = 0x10  # enhanced (RFC 6581): IRD/ORD words lead the private data
MPA_HDR_LEN = 20
MPA_MAX_PD = 512

IRD_P2P = 0x8000
IRD_RTR_SEND = 0x4000
ORD_RTR_WRITE = 0x8000
ORD_RTR_READ = 0x4000
IRD_ORD_MASK = 0x3FFF

DDP_T = 0x80
DDP_L = 0x40

OP_WRITE, OP_READ_REQ, OP_READ_RESP, OP_SEND, OP_SEND_INV, OP_SEND_SE, OP_SEND_SE_INV = range(7)
OP_TERMINATE = 7
OP_IMM_DATA = 8
OP_ATOMIC_REQ = 10
MPA_FLAG_RFC7306_OFFER = 0x04   # softiwarp's RFC 7306 handshake (docs/PROTOCOL.md 6.5)
MPA_FLAG_RFC7306_ACCEPT = 0x02
OP_NAMES = ["write", "read_req", "read_resp", "send", "send_inv", "send_se", "send_se_inv",
            "terminate", "imm_data", "imm_data_se", "atomic_req", "atomic_resp"]

QN_SEND, QN_READ, QN_TERM = 0, 1, 2
TAGGED_HDR = 14     # DDP tagged header incl. the RDMAP control octet
UNTAGGED_HDR = 18   # DDP untagged header incl. the RDMAP control octet and RsvdULP word
RREQ_LEN = 28       # RDMA Read Request header after the untagged DDP header
U64 = 1 << 64

# Terminate error names (RFC 5040/5041/5044/6581 via docs/PROTOCOL.md, RFC 6580 registry).
TERM_NAMES = {
    (0, 0): "RDMAP local catastrophic",
    (0, 1, 0x00): "RDMAP invalid STag",
    (0, 1, 0x01): "RDMAP base or bounds violation",
    (0, 1, 0x02): "RDMAP access rights violation",
    (0, 1, 0x03): "RDMAP STag not associated with RDMAP stream",
    (0, 1, 0x04): "RDMAP TO wrap",
    (0, 1, 0x09): "RDMAP STag cannot be invalidated",
    (0, 1, 0xFF): "RDMAP remote protection unspecified",
    (0, 2, 0x05): "RDMAP invalid RDMAP version",
    (0, 2, 0x06): "RDMAP unexpected opcode",
    (0, 2, 0x07): "RDMAP catastrophic error localized to stream",
    (0, 2, 0x08): "RDMAP catastrophic error global",
    (0, 2, 0xFF): "RDMAP remote operation unspecified",
    (1, 0, 0x00): "DDP local catastrophic",
    (1, 1, 0x00): "DDP tagged invalid STag",
    (1, 1, 0x01): "DDP tagged base or bounds violation",
    (1, 1, 0x02): "DDP tagged STag not associated with DDP stream",
    (1, 1, 0x03): "DDP tagged TO wrap",
    (1, 1, 0x04): "DDP tagged invalid DDP version",
    (1, 2, 0x01): "DDP untagged invalid QN",
    (1, 2, 0x02): "DDP untagged invalid MSN - no buffer available",
    (1, 2, 0x03): "DDP untagged invalid MSN - MSN range is not valid",
    (1, 2, 0x04): "DDP untagged invalid MO",
    (1, 2, 0x05): "DDP untagged DDP message too long for available buffer",
    (1, 2, 0x06): "DDP untagged invalid DDP version",
    (2, 0, 0x01): "MPA TCP connection closed, terminated or lost",
    (2, 0, 0x02): "MPA received CRC does not match",
    (2, 0, 0x03): "MPA marker and ULPDU length mismatch",
    (2, 0, 0x04): "MPA invalid request or reply frame",
    (2, 0, 0x05): "MPA local catastrophic",
    (2, 0, 0x06): "MPA insufficient IRD resources",
    (2, 0, 0x07): "MPA no matching RTR option",
}


def term_name(layer, etype, ecode):
    if (layer, etype) == (0, 0):
        return TERM_NAMES[(0, 0)]
    return TERM_NAMES.get((layer, etype, ecode), "unregistered")


def hexs(b, limit=96):
    b = bytes(b)
    return b[:limit].hex() + ("..." if len(b) > limit else "")


# ---- MPA frames -----------------------------------------------------------------------------


def mpa_request(rev=2, crc=True, markers=False, enhanced=None, p2p=False, rtr=("write",),
                ird=4, ord_=4, pd=b"", pd_len=None, key=MPA_KEY_REQ, extra_flags=0):
    """An MPA request frame. Every field can be made wrong on purpose.

    enhanced: put the RFC 6581 IRD/ORD words first (default: rev == 2). rtr: RTR types to
    offer with p2p ("send", "write", "read"). pd_len overrides the PD_Length field only.
    """
    if enhanced is None:
        enhanced = rev == 2
    flags = extra_flags
    if markers:
        flags |= MPA_FLAG_M
    if crc:
        flags |= MPA_FLAG_C
    words = b""
    if enhanced:
        flags |= MPA_FLAG_H
        ird_w, ord_w = ird & IRD_ORD_MASK, ord_ & IRD_ORD_MASK
        if p2p:
            ird_w |= IRD_P2P
            if "send" in rtr:
                ird_w |= IRD_RTR_SEND
            if "write" in rtr:
                ord_w |= ORD_RTR_WRITE
            if "read" in rtr:
                ord_w |= ORD_RTR_READ
        words = struct.pack(">HH", ird_w, ord_w)
    private = words + bytes(pd)
    length = len(private) if pd_len is None else pd_len
    return bytes(key) + bytes([flags & 0xFF, rev & 0xFF]) + struct.pack(">H", length) + private


def parse_mpa_frame(frame):
    """Decodes a request or reply (20-byte header + private data)."""
    key = frame[:16]
    flags, rev = frame[16], frame[17]
    pd_len = struct.unpack(">H", frame[18:20])[0]
    pd = frame[20:20 + pd_len]
    out = {
        "key": key.decode("latin-1"),
        "key_ok": key in (MPA_KEY_REQ, MPA_KEY_REP),
        "is_reply": key == MPA_KEY_REP,
        "flags": flags, "M": bool(flags & MPA_FLAG_M), "C": bool(flags & MPA_FLAG_C),
        "R": bool(flags & MPA_FLAG_R), "H": bool(flags & MPA_FLAG_H),
        "reserved": flags & 0x0F, "rev": rev, "pd_len": pd_len, "pd": hexs(pd),
    }
    if out["H"] and rev == 2 and pd_len >= 4:
        ird_w, ord_w = struct.unpack(">HH", pd[:4])
        rtr = [n for n, bit, w in (("send", IRD_RTR_SEND, ird_w), ("write", ORD_RTR_WRITE, ord_w),
                                   ("read", ORD_RTR_READ, ord_w)) if w & bit]
        out.update(ird=ird_w & IRD_ORD_MASK, ord=ord_w & IRD_ORD_MASK, p2p=bool(ird_w & IRD_P2P),
                   rtr=rtr, ird_word=ird_w, ord_word=ord_w, user_pd=hexs(pd[4:]))
    return out


# ---- DDP / RDMAP headers and FPDUs ------------------------------------------------------------


def ddp_tagged(opcode, stag, to, last=True, dv=1, rv=1):
    """14 bytes: DDP control, RDMAP control, STag, TO."""
    ddp = DDP_T | (DDP_L if last else 0) | (dv & 3)
    rdmap = ((rv & 3) << 6) | (opcode & 0xF)
    return bytes([ddp, rdmap]) + struct.pack(">IQ", stag & 0xFFFFFFFF, to % U64)


def ddp_untagged(opcode, qn, msn, mo, inv=0, last=True, dv=1, rv=1, tagged_bit=False):
    """18 bytes: DDP control, RDMAP control, RsvdULP (invalidate STag), QN, MSN, MO."""
    ddp = (DDP_L if last else 0) | (dv & 3) | (DDP_T if tagged_bit else 0)
    rdmap = ((rv & 3) << 6) | (opcode & 0xF)
    return bytes([ddp, rdmap]) + struct.pack(">IIII", inv, qn, msn & 0xFFFFFFFF, mo)


def read_req_body(sink_stag, sink_to, size, src_stag, src_to):
    return struct.pack(">IQIIQ", sink_stag, sink_to % U64, size, src_stag, src_to % U64)


def atomic_req_body(aop, req_id, stag, to, add_swap, add_mask=0, cmp=0, cmp_mask=0):
    """RFC 7306 Atomic Request header after the untagged DDP header (52 bytes)."""
    return struct.pack(">IIIQQQQQ", aop & 0xF, req_id, stag, to % U64, add_swap, add_mask,
                       cmp, cmp_mask)


def terminate_body(layer, etype, ecode, m=False, d=False, r=False, extra=b""):
    ctrl = (layer << 28) | (etype << 24) | (ecode << 16)
    ctrl |= (0x8000 if m else 0) | (0x4000 if d else 0) | (0x2000 if r else 0)
    return struct.pack(">I", ctrl) + extra


def mpa_pad_len(ulpdu_len):
    return (-(2 + ulpdu_len)) % 4


def fpdu(ulpdu, crc=True, ulpdu_len=None, pad=None, crc_xor=0):
    """MPA FPDU: ULPDU_Length (2) | ULPDU | pad to 4 | CRC32c (least significant byte first).

    ulpdu_len overrides only the length field; pad gives the pad bytes (default zeros);
    crc_xor corrupts the CRC. With CRC off the field is sent as 0.
    """
    length = len(ulpdu) if ulpdu_len is None else ulpdu_len
    padlen = mpa_pad_len(len(ulpdu))
    padb = bytes(padlen) if pad is None else bytes(pad)
    assert len(padb) == padlen, "pad must be %d bytes" % padlen
    body = struct.pack(">H", length & 0xFFFF) + bytes(ulpdu) + padb
    c = crc32c(body) if crc else 0
    return body + struct.pack("<I", c ^ crc_xor)


def parse_terminate(body):
    """Decodes a TERMINATE (the part after the untagged DDP header), RFC layout.

    Also shows the reading of kernel siw's little-endian bit-field layout (layer/etype nibbles
    exchanged, M/D/R at 0x100/0x200/0x400), for peers that send it.
    """
    out = {"body_len": len(body)}
    if len(body) < 4:
        out["malformed"] = "shorter than the control word"
        return out
    ctrl = struct.unpack(">I", body[:4])[0]
    layer, etype, ecode = ctrl >> 28, (ctrl >> 24) & 0xF, (ctrl >> 16) & 0xFF
    out.update(ctrl="0x%08x" % ctrl, layer=layer, etype=etype, ecode=ecode,
               name=term_name(layer, etype, ecode), M=bool(ctrl & 0x8000),
               D=bool(ctrl & 0x4000), R=bool(ctrl & 0x2000), reserved=ctrl & 0x1FFF)
    out["siw_le_reading"] = {"layer": etype, "etype": layer, "ecode": ecode,
                             "name": term_name(etype, layer, ecode),
                             "M": bool(ctrl & 0x100), "D": bool(ctrl & 0x200),
                             "R": bool(ctrl & 0x400)}
    rest = body[4:]
    if out["M"] or out["D"]:
        if len(rest) >= 2:
            out["ddp_seg_len"] = struct.unpack(">H", rest[:2])[0]
    if out["D"] and len(rest) > 2:
        hlen = TAGGED_HDR if rest[2] & DDP_T else UNTAGGED_HDR
        h = rest[2:2 + hlen]
        out["ddp_hdr"] = h.hex()
        if len(h) == hlen:
            out["ddp_hdr_decoded"] = parse_ulpdu(h, header_only=True)
        if out["R"]:
            rh = rest[2 + hlen:2 + hlen + RREQ_LEN]
            out["rdmap_hdr"] = rh.hex()
        # What the Terminate copied, from the length slot on: compared with the offending FPDU.
        out["copied"] = rest[:2 + hlen + (RREQ_LEN if out["R"] else 0)].hex()
    return out


def parse_ulpdu(u, header_only=False):
    """Decodes a DDP segment (ULPDU)."""
    if len(u) < 2:
        return {"malformed": "ULPDU shorter than 2 bytes", "len": len(u)}
    ddp, rdmap = u[0], u[1]
    op = rdmap & 0xF
    out = {"tagged": bool(ddp & DDP_T), "last": bool(ddp & DDP_L), "dv": ddp & 3,
           "rv": rdmap >> 6, "opcode": op, "op": OP_NAMES[op] if op < len(OP_NAMES) else "?"}
    if out["tagged"]:
        if len(u) < TAGGED_HDR:
            out["malformed"] = "short tagged header"
            return out
        out["stag"], out["to"] = struct.unpack(">IQ", u[2:14])
        out["payload_len"] = len(u) - TAGGED_HDR
        if not header_only:
            out["payload"] = u[TAGGED_HDR:]
        return out
    if len(u) < UNTAGGED_HDR:
        out["malformed"] = "short untagged header"
        return out
    out["inv_stag"], out["qn"], out["msn"], out["mo"] = struct.unpack(">IIII", u[2:18])
    body = u[UNTAGGED_HDR:]
    if header_only:
        return out
    if op == OP_TERMINATE:
        out["terminate"] = parse_terminate(body)
    elif op == OP_READ_REQ and len(body) >= RREQ_LEN:
        (out["sink_stag"], out["sink_to"], out["size"], out["src_stag"],
         out["src_to"]) = struct.unpack(">IQIIQ", body[:RREQ_LEN])
    else:
        out["payload"] = body
    return out


# ---- a connection ------------------------------------------------------------------------------


class PeerClosed(Exception):
    def __init__(self, kind, partial=0):
        super().__init__(kind)
        self.kind, self.partial = kind, partial


class PeerTimeout(Exception):
    pass


class Terminated(Exception):
    def __init__(self, info):
        super().__init__(info.get("name", "TERMINATE"))
        self.info = info


class Conn:
    """One TCP connection to the target, as MPA initiator. All I/O is deadline-bounded."""

    def __init__(self, host, port, timeout=3.0, trace=None):
        self.timeout = timeout
        self.t0 = time.monotonic()
        self.trace = trace if trace is not None else []
        self.buf = bytearray()
        self.crc = False
        self.p2p = False
        self.rtr = None
        self.reply = None
        self.msn = {QN_SEND: 1, QN_READ: 1, QN_TERM: 1}
        self.rx_fpdus = []
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.t_connected = self.ms()
        self.log("connected", local_port=self.local_port)

    # -- bookkeeping
    def ms(self):
        return round((time.monotonic() - self.t0) * 1000.0, 1)

    def log(self, _event, **kw):
        ev = {"t_ms": self.ms(), "event": _event}
        ev.update(kw)
        self.trace.append(ev)

    # -- raw I/O
    def send(self, data, what="bytes", **kw):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)
        self.log("sent", what=what, len=len(data), hex=hexs(data), **kw)

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.log("shutdown_wr")
        except OSError as e:
            self.log("shutdown_wr_failed", error=str(e))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeout()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise PeerTimeout() from None
            except ConnectionResetError:
                raise PeerClosed("rst", len(self.buf)) from None
            except OSError as e:
                raise PeerClosed("error:%s" % e.__class__.__name__, len(self.buf)) from None
            if not chunk:
                raise PeerClosed("fin", len(self.buf))
            self.buf += chunk

    def recv_exact(self, n, timeout=None):
        self._fill(n, time.monotonic() + (self.timeout if timeout is None else timeout))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    # -- MPA
    def mpa_send_request(self, frame, what="mpa_request"):
        self.send(frame, what)

    def mpa_read_reply(self, timeout=None):
        hdr = self.recv_exact(MPA_HDR_LEN, timeout)
        pd_len = struct.unpack(">H", hdr[18:20])[0]
        pd = self.recv_exact(pd_len, timeout) if pd_len else b""
        rep = parse_mpa_frame(hdr + pd)
        self.reply = rep
        self.log("mpa_reply", reply=rep)
        return rep

    def negotiate(self, crc=True, p2p=False, rtr=("write",), ird=4, ord_=4, rev=2, pd=b"",
                  **kw):
        """Request + reply; sets CRC and the RTR to send. Raises on a reject."""
        self.mpa_send_request(mpa_request(rev=rev, crc=crc, p2p=p2p, rtr=rtr, ird=ird,
                                          ord_=ord_, pd=pd, **kw))
        rep = self.mpa_read_reply()
        self.t_mpa = self.ms()
        if not rep["key_ok"] or not rep["is_reply"]:
            raise RuntimeError("bad MPA reply key %r" % rep["key"])
        if rep["R"]:
            raise RuntimeError("MPA reject")
        self.crc = crc or rep["C"]
        self.p2p = bool(rep.get("p2p"))
        self.rtr = rep["rtr"][0] if self.p2p and rep.get("rtr") else None
        return rep

    # -- FPDUs
    def fpdu(self, ulpdu, **kw):
        kw.setdefault("crc", self.crc)
        return fpdu(ulpdu, **kw)

    def next_msn(self, qn):
        m = self.msn[qn]
        self.msn[qn] = (m + 1) & 0xFFFFFFFF
        return m

    def send_rtr(self, kind=None):
        """The RFC 6581 ready-to-receive message (zero length; STag 1, never 0)."""
        kind = kind or self.rtr
        if kind == "write":
            f = self.fpdu(ddp_tagged(OP_WRITE, 1, 0))
        elif kind == "read":
            f = self.fpdu(ddp_untagged(OP_READ_REQ, QN_READ, self.next_msn(QN_READ), 0) +
                          read_req_body(1, 0, 0, 1, 0))
        elif kind == "send":
            f = self.fpdu(ddp_untagged(OP_SEND, QN_SEND, self.next_msn(QN_SEND), 0))
        else:
            raise ValueError("no RTR negotiated")
        self.send(f, "rtr_" + kind)
        return f

    def write(self, stag, to, data, what="write", **kw):
        f = self.fpdu(ddp_tagged(OP_WRITE, stag, to) + bytes(data), **kw)
        self.send(f, what, stag=stag, to=to % U64, len_payload=len(data))
        return f

    def read_request(self, src_stag, src_to, size, sink_stag=0x00C0FFEE, sink_to=0,
                     what="read_req", msn=None):
        msn = self.next_msn(QN_READ) if msn is None else msn
        f = self.fpdu(ddp_untagged(OP_READ_REQ, QN_READ, msn, 0) +
                      read_req_body(sink_stag, sink_to, size, src_stag, src_to))
        self.send(f, what, src_stag=src_stag, src_to=src_to % U64, size=size)
        return f

    def send_msg(self, data, what="send", opcode=OP_SEND, inv=0, msn=None, qn=QN_SEND, mo=0,
                 **kw):
        msn = self.next_msn(QN_SEND) if msn is None else msn
        f = self.fpdu(ddp_untagged(opcode, qn, msn, mo, inv=inv) + bytes(data), **kw)
        self.send(f, what, msn=msn, qn=qn, mo=mo, len_payload=len(data))
        return f

    def read_fpdu(self, timeout=None):
        """Next FPDU from the target, CRC checked when negotiated."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(2, deadline)
        ulen = struct.unpack(">H", self.buf[:2])[0]
        total = 2 + ulen + mpa_pad_len(ulen) + 4
        self._fill(total, deadline)
        raw = bytes(self.buf[:total])
        del self.buf[:total]
        body, crc_field = raw[:-4], struct.unpack("<I", raw[-4:])[0]
        info = parse_ulpdu(raw[2:2 + ulen])
        info["ulpdu_len"] = ulen
        info["crc_ok"] = (crc32c(body) == crc_field) if self.crc else None
        info["pad"] = raw[2 + ulen:-4].hex()
        info["t_ms"] = self.ms()
        self.rx_fpdus.append(info)
        brief = {k: v for k, v in info.items() if k != "payload"}
        if "payload" in info:
            brief["payload_len"] = len(info["payload"])
        self.log("fpdu", fpdu=brief)
        return info

    def rdma_read(self, src_stag, src_to, size, sink_stag=0x00C0FFEE, sink_to=0, timeout=None):
        """RDMA READ: request, then the READ RESPONSE segments until L. Raises Terminated."""
        self.read_request(src_stag, src_to, size, sink_stag, sink_to)
        data = bytearray()
        while True:
            f = self.read_fpdu(timeout)
            if f.get("opcode") == OP_TERMINATE:
                raise Terminated(f.get("terminate", {}))
            if f.get("opcode") != OP_READ_RESP:
                continue
            if f.get("crc_ok") is False:
                raise RuntimeError("READ RESPONSE with a bad CRC")
            if f["stag"] != sink_stag or f["to"] != (sink_to + len(data)) % U64:
                raise RuntimeError("READ RESPONSE at stag 0x%x to 0x%x, expected 0x%x 0x%x" %
                                   (f["stag"], f["to"], sink_stag, sink_to + len(data)))
            data += f["payload"]
            if f["last"]:
                if len(data) != size:
                    raise RuntimeError("READ RESPONSE of %d bytes, asked %d" % (len(data), size))
                return bytes(data)

    def observe(self, timeout=3.0, linger=2.0):
        """Reads until the target closes or `timeout` passes; after a TERMINATE waits at most
        `linger` more for the close. Returns what was seen."""
        out = {"terminate": None, "fpdus": 0, "close": "open", "t_term_ms": None,
               "t_close_ms": None, "partial_bytes": 0}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                f = self.read_fpdu(left)
            except PeerTimeout:
                break
            except PeerClosed as e:
                out["close"] = e.kind
                out["t_close_ms"] = self.ms()
                out["partial_bytes"] = e.partial
                break
            if f.get("opcode") == OP_TERMINATE and out["terminate"] is None:
                out["terminate"] = dict(f.get("terminate", {}))
                out["terminate"]["qn"] = f.get("qn")
                out["terminate"]["msn"] = f.get("msn")
                out["terminate"]["crc_ok"] = f.get("crc_ok")
                out["t_term_ms"] = self.ms()
                deadline = min(deadline, time.monotonic() + linger)
            else:
                out["fpdus"] += 1
        if out["close"] == "open":
            out["close"] = "timeout"
        return out


# ---- targets -----------------------------------------------------------------------------------


class Target:
    """Where a scenario aims: one region (stag, to, len) and the receive queue facts."""

    def __init__(self, stag=0, to=0, length=4096, recvs=4, recv_len=1024, region=None):
        self.stag, self.to, self.len = stag, to, length
        self.recvs, self.recv_len, self.region = recvs, recv_len, region

    def as_dict(self):
        return {"stag": "0x%08x" % self.stag, "to": "0x%016x" % self.to, "len": self.len,
                "recvs": self.recvs, "recv_len": self.recv_len, "region": self.region}


def server_log_resolver(path, region, timeout=5.0):
    """For hostile_server: finds this connection's "start" line in the server's JSON output.
    region "other_conn:NAME" picks region NAME of the newest other connection still open."""
    other = region.startswith("other_conn:")
    name = region.split(":", 1)[1] if other else region

    def pick(events, local_port):
        if not other:
            for ev in events:
                if ev.get("event") == "start" and ev.get("peer_port") == local_port:
                    return ev
            return None
        ended = {ev.get("peer_port") for ev in events if ev.get("event") == "end"}
        live = [ev for ev in events if ev.get("event") == "start" and
                ev.get("peer_port") not in ended and ev.get("peer_port") != local_port]
        return live[-1] if live else None

    def resolve(local_port):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = []
            try:
                with open(path, encoding="utf-8") as f:
                    for line in f:
                        try:
                            events.append(json.loads(line))
                        except ValueError:
                            continue
            except OSError:
                pass
            ev = pick(events, local_port)
            if ev:
                r = ev["regions"][name]
                return Target(r["stag"], r["to"], r["len"], ev.get("recvs", 4),
                              ev.get("recv_len", 1024), region)
            time.sleep(0.02)
        raise RuntimeError("no %s start line for port %d in %s" %
                           ("other live" if other else "matching", local_port, path))

    return resolve


# ---- expectations --------------------------------------------------------------------------------

# kind:   term     a TERMINATE with `triple` (layer, etype, ecode), then the connection closes
#         closed   the target closes without a TERMINATE
#         accept   the target takes it: no TERMINATE, the connection stays usable
#         mpa_close   no MPA reply; the target closes the connection
#         mpa_reject  an MPA reply with R set, then close
#         stall    the target closes after its own timeout (no reply / no FPDU before it)
#         idle     nothing happens; the connection stays open
#         flood    every connection negotiates; all close cleanly
# flags:  M/D/R bits of the TERMINATE; copy: what its header copy must equal (the offending
#         FPDU's first 2 + 14 / 2 + 18 / 2 + 46 bytes), None = nothing copied.
# region: which hostile_server region the scenario aims at ("other_conn:rw" = another
#         connection's). server_err: what hostile_server must report as the QP's end.
# Softiwarp's choices (src/core/rx.c, mem.c, engine/qp_rx.c); see README.md for RFC notes.

def _t(triple, flags, copy, region="rw", server_err="term", **kw):
    d = {"kind": "term", "triple": triple, "flags": flags, "copy": copy, "region": region,
         "server_err": server_err}
    d.update(kw)
    return d


EXPECT = {
    "write_invalid_stag": _t((1, 1, 0), "MD", "tagged", pristine=["rw"]),
    "write_foreign_pd": _t((1, 1, 2), "MD", "tagged", region="foreign_pd",
                           pristine=["foreign_pd"]),
    "write_other_conn": _t((1, 1, 2), "MD", "tagged", region="other_conn:rw"),
    "write_past_end": _t((1, 1, 1), "MD", "tagged", pristine=["rw"]),
    "write_below_base": _t((1, 1, 1), "MD", "tagged", pristine=["rw"]),
    "write_to_wrap": _t((1, 1, 3), "MD", "tagged", pristine=["rw"]),
    "write_readonly": _t((0, 1, 2), "MD", "tagged", region="ro", pristine=["ro"]),
    "write_local_only": _t((0, 1, 2), "MD", "tagged", region="lw"),
    "read_past_end": _t((0, 1, 1), "MDR", "rreq"),
    "read_to_wrap": _t((0, 1, 4), "MDR", "rreq"),
    "read_no_access": _t((0, 1, 2), "MDR", "rreq", region="lw"),
    "read_foreign_pd": _t((0, 1, 3), "MDR", "rreq", region="foreign_pd"),
    "read_other_conn": _t((0, 1, 3), "MDR", "rreq", region="other_conn:rw"),
    "read_invalid_stag": _t((0, 1, 0), "MDR", "rreq"),
    "read_beyond_ird": _t((1, 2, 2), "MD", "untagged"),
    "read_resp_unsolicited": _t((0, 2, 6), "", None, pristine=["rw"]),
    "send_no_recv": _t((1, 2, 2), "MD", "untagged", region="lw"),
    "send_too_long": _t((1, 2, 5), "MD", "untagged", region="lw"),
    "send_inv_other_conn": _t((0, 1, 9), "MD", "untagged", region="other_conn:rw"),
    "write_after_invalidate": _t((1, 1, 0), "MD", "tagged", pristine=["rw"]),
    "write_then_bad": _t((1, 1, 0), "MD", "tagged"),
    "wrong_msn": _t((1, 2, 3), "MD", "untagged", region="lw"),
    "wrong_qn": _t((1, 2, 1), "MD", "untagged", region="lw"),
    "wrong_mo": _t((1, 2, 4), "MD", "untagged", region="lw"),
    "bad_crc": _t((2, 0, 2), "", None, pristine=["rw"]),
    "pad_nonzero": {"kind": "accept", "region": "rw"},
    "fpdu_before_reply": {"kind": "accept", "region": "rw"},
    "p2p_read_rtr": {"kind": "accept", "region": "rw"},
    "wrong_mo_second_segment": _t((1, 2, 4), "MD", "untagged", region="lw"),
    "ulpdu_max_write": _t((1, 1, 1), "MD", "tagged", pristine=["rw"]),
    "ulpdu_max_send": _t((1, 2, 5), "MD", "untagged", region="lw"),
    "ulpdu_short_tagged": _t((1, 0, 0), "", None, pristine=["rw"]),
    "ulpdu_short_untagged": _t((1, 0, 0), "", None, region="lw"),
    "ulpdu_short_read_req": _t((1, 0, 0), "", None),
    "ddp_version_tagged": _t((1, 1, 4), "", None, pristine=["rw"]),
    "ddp_version_untagged": _t((1, 2, 6), "", None, region="lw"),
    "rdmap_version": _t((0, 2, 5), "", None, pristine=["rw"]),
    "opcode_reserved": _t((0, 2, 6), "", None, region="lw"),
    "opcode_rfc7306_unnegotiated": _t((0, 2, 6), "", None, region="lw"),
    # RFC 7306 offered and accepted (PROTOCOL.md 6.5): atomics are checked like READs.
    "atomic_no_access": _t((0, 1, 2), "MD", "untagged", pristine=["rw"]),
    "atomic_misaligned": _t((0, 1, 1), "MD", "untagged", pristine=["rw"]),
    "atomic_unnegotiated": _t((0, 2, 6), "", None, pristine=["rw"]),
    "send_with_t_bit": _t((0, 2, 6), "", None, region="lw"),
    "rtr_wrong_type": _t((2, 0, 7), "", None),
    "rtr_with_payload": _t((2, 0, 7), "", None, pristine=["rw"]),
    "trunc_header_close": {"kind": "closed", "region": "rw", "server_err": "closed"},
    "trunc_payload_close": {"kind": "closed", "region": "rw", "server_err": "closed"},
    "peer_terminate": {"kind": "closed", "region": "rw", "server_err": "terminated"},
    # A TERMINATE longer than any legal one (52-byte body at most): still a TERMINATE, and
    # rx.c's own rule (RFC 5040) is that none goes back for one.
    "terminate_oversized": {"kind": "closed", "region": "rw", "server_err": "terminated"},
    "mpa_bad_key": {"kind": "mpa_close"},
    "mpa_reply_key": {"kind": "mpa_close"},
    "mpa_rev3": {"kind": "mpa_close"},
    "mpa_pdlen_513": {"kind": "mpa_close"},
    "mpa_pdlen_ffff": {"kind": "mpa_close"},
    "mpa_enhanced_rev1": {"kind": "mpa_close"},
    "mpa_markers": {"kind": "mpa_reject", "triple": (2, 0, 4)},
    "mpa_p2p_send_rtr_only": {"kind": "mpa_reject", "triple": (2, 0, 7)},
    "stall_connect": {"kind": "stall", "stage": "mpa"},
    "stall_half_request": {"kind": "stall", "stage": "mpa"},
    "stall_after_reply_p2p": {"kind": "stall", "stage": "rtr"},
    "idle_after_reply": {"kind": "idle"},
    "flood": {"kind": "flood"},
}

# ---- scenarios -----------------------------------------------------------------------------------

DATA16 = bytes(range(0xE0, 0xF0))  # 16 attack bytes, easy to spot in memory


class Ctx:
    def __init__(self, host, port, resolve, opts):
        self.host, self.port, self.resolve, self.opts = host, port, resolve, opts
        self.trace = []
        self.conns = []
        self.attack = None     # the offending FPDU (for the TERMINATE's header copy)
        self.target = None
        self.extra = {}

    def conn(self, timeout=None):
        c = Conn(self.host, self.port, timeout or self.opts.get("timeout", 3.0), self.trace)
        self.conns.append(c)
        return c

    def negotiated(self, **kw):
        c = self.conn()
        kw.setdefault("crc", self.opts.get("crc", True))
        c.negotiate(**kw)
        if c.p2p:
            c.send_rtr()
        self.target = self.resolve(c.local_port) if callable(self.resolve) else self.resolve
        return c


SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__[3:]] = fn
    return fn


def _observe(ctx, c):
    return c.observe(ctx.opts.get("term_timeout", 3.0), ctx.opts.get("linger", 2.0))


@scenario
def sc_write_invalid_stag(ctx):
    c = ctx.negotiated()
    t = ctx.target
    # Same index, another key byte: guessing the 8-bit key must not work.
    ctx.attack = c.write(t.stag ^ 0x5A, t.to, DATA16, "write_bad_key")
    return _observe(ctx, c)


def _write_at(ctx, to_of, data=DATA16, what="write"):
    c = ctx.negotiated()
    t = ctx.target
    ctx.attack = c.write(t.stag, to_of(t), data, what)
    return _observe(ctx, c)


@scenario
def sc_write_foreign_pd(ctx):
    return _write_at(ctx, lambda t: t.to)


@scenario
def sc_write_other_conn(ctx):
    return _write_at(ctx, lambda t: t.to)


@scenario
def sc_write_past_end(ctx):
    # 16 bytes whose last one is the first byte after the region.
    return _write_at(ctx, lambda t: t.to + t.len - 15)


@scenario
def sc_write_below_base(ctx):
    return _write_at(ctx, lambda t: t.to - 1)


@scenario
def sc_write_to_wrap(ctx):
    return _write_at(ctx, lambda t: U64 - 8, bytes(64), "write_wrap")


@scenario
def sc_write_readonly(ctx):
    return _write_at(ctx, lambda t: t.to)


@scenario
def sc_write_local_only(ctx):
    return _write_at(ctx, lambda t: t.to)


def _read_at(ctx, to_of, size=16, stag_of=None):
    c = ctx.negotiated()
    t = ctx.target
    stag = stag_of(t) if stag_of else t.stag
    ctx.attack = c.read_request(stag, to_of(t), size)
    return _observe(ctx, c)


@scenario
def sc_read_past_end(ctx):
    return _read_at(ctx, lambda t: t.to + t.len - 15)


@scenario
def sc_read_to_wrap(ctx):
    return _read_at(ctx, lambda t: U64 - 8, 64)


@scenario
def sc_read_no_access(ctx):
    return _read_at(ctx, lambda t: t.to)


@scenario
def sc_read_foreign_pd(ctx):
    return _read_at(ctx, lambda t: t.to)


@scenario
def sc_read_other_conn(ctx):
    return _read_at(ctx, lambda t: t.to)


@scenario
def sc_read_invalid_stag(ctx):
    return _read_at(ctx, lambda t: t.to, stag_of=lambda t: t.stag ^ 0x5A)


@scenario
def sc_read_beyond_ird(ctx):
    # ORD 1 in our request: the responder's IRD becomes 1; two READs in one segment.
    c = ctx.negotiated(ord_=1)
    t = ctx.target
    f1 = c.fpdu(ddp_untagged(OP_READ_REQ, QN_READ, c.next_msn(QN_READ), 0) +
                read_req_body(0x1111, 0, 16, t.stag, t.to))
    f2 = c.fpdu(ddp_untagged(OP_READ_REQ, QN_READ, c.next_msn(QN_READ), 0) +
                read_req_body(0x2222, 0, 16, t.stag, t.to))
    c.send(f1 + f2, "two_read_reqs_ord1")
    ctx.attack = f2
    return _observe(ctx, c)


@scenario
def sc_read_resp_unsolicited(ctx):
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_tagged(OP_READ_RESP, t.stag, t.to) + DATA16)
    c.send(f, "read_resp_unsolicited")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_send_no_recv(ctx):
    c = ctx.negotiated()
    n = ctx.target.recvs
    frames = [c.fpdu(ddp_untagged(OP_SEND, QN_SEND, c.next_msn(QN_SEND), 0) + b"hostile%d" % i)
              for i in range(n + 1)]
    c.send(b"".join(frames), "sends_one_more_than_posted", count=n + 1)
    ctx.attack = frames[-1]
    return _observe(ctx, c)


@scenario
def sc_send_too_long(ctx):
    c = ctx.negotiated()
    ctx.attack = c.send_msg(bytes(ctx.target.recv_len + 1), "send_recv_len_plus_1")
    return _observe(ctx, c)


@scenario
def sc_send_inv_other_conn(ctx):
    # A SEND with Invalidate naming another connection's STag.
    c = ctx.negotiated()
    ctx.attack = c.send_msg(b"inv", "send_inv_foreign_stag", opcode=OP_SEND_INV,
                            inv=ctx.target.stag)
    return _observe(ctx, c)


@scenario
def sc_write_after_invalidate(ctx):
    # Legal: a SEND with Invalidate of our own region's STag. Then a WRITE through it.
    c = ctx.negotiated()
    t = ctx.target
    c.send_msg(b"inv", "send_inv_own_stag", opcode=OP_SEND_INV, inv=t.stag)
    ctx.attack = c.write(t.stag, t.to, DATA16, "write_invalidated_stag")
    return _observe(ctx, c)


@scenario
def sc_write_then_bad(ctx):
    # A valid WRITE and, in the same TCP segment, a WRITE with a bad STag: the first is placed
    # (it was complete and valid), the second terminates the stream.
    c = ctx.negotiated()
    t = ctx.target
    good = c.fpdu(ddp_tagged(OP_WRITE, t.stag, t.to + 200) + DATA16)
    bad = c.fpdu(ddp_tagged(OP_WRITE, t.stag ^ 0x5A, t.to) + DATA16)
    c.send(good + bad, "valid_write_then_bad_stag_write")
    ctx.attack = bad
    return _observe(ctx, c)


@scenario
def sc_wrong_msn(ctx):
    c = ctx.negotiated()
    ctx.attack = c.send_msg(b"msn", "send_msn_7", msn=7)
    return _observe(ctx, c)


@scenario
def sc_wrong_qn(ctx):
    c = ctx.negotiated()
    ctx.attack = c.send_msg(b"qn", "send_qn_5", qn=5)
    return _observe(ctx, c)


@scenario
def sc_wrong_mo(ctx):
    c = ctx.negotiated()
    ctx.attack = c.send_msg(b"mo", "send_first_segment_mo_8", mo=8)
    return _observe(ctx, c)


@scenario
def sc_bad_crc(ctx):
    c = ctx.negotiated(crc=True)
    t = ctx.target
    ctx.attack = c.write(t.stag, t.to, DATA16, "write_bad_crc", crc_xor=0xFFFFFFFF)
    return _observe(ctx, c)


@scenario
def sc_pad_nonzero(ctx):
    """Non-zero pad bytes, CRC computed over them: must be accepted (RFC 5044: the receiver
    ignores the pad's content; kernel siw sends stale bytes there, see README.md)."""
    c = ctx.negotiated(crc=True)
    t = ctx.target
    data = b"\x11\x22\x33\x44\x55"       # ULPDU 19 bytes -> 3 pad bytes
    ctx.attack = c.write(t.stag, t.to + 100, data, "write_pad_deadbe", pad=b"\xde\xad\xbe")
    return _accept_check(ctx, c, t, data, 100)


def _accept_check(ctx, c, t, data, off):
    """Reads back what an accepted WRITE put at t.to + off."""
    try:
        got = c.rdma_read(t.stag, t.to + off, len(data))
    except Terminated as e:
        obs = _observe(ctx, c)
        obs["terminate"] = e.info
        return obs
    obs = c.observe(0.3, 0.1)
    if obs["close"] == "timeout":
        obs["close"] = "open"     # nothing came and nothing closed: still usable
    obs["read_back"] = got.hex()
    obs["read_back_ok"] = got == data
    return obs


@scenario
def sc_fpdu_before_reply(ctx):
    """The request and a WRITE in one segment, before the reply (RFC 5044 forbids it; the
    responder must still not read the FPDU as part of the MPA frame)."""
    c = ctx.conn()
    c.crc = True
    data = b"early"
    # The STag is not known before the reply (hostile_server makes it per connection): the
    # early FPDU is a zero-length WRITE, plus a SEND that takes a posted receive.
    early = c.fpdu(ddp_tagged(OP_WRITE, 1, 0)) + \
        c.fpdu(ddp_untagged(OP_SEND, QN_SEND, c.next_msn(QN_SEND), 0) + data)
    c.send(mpa_request(crc=True) + early, "mpa_request_plus_two_fpdus")
    rep_ = c.mpa_read_reply()
    if rep_["R"] or not rep_["is_reply"]:
        return {"terminate": None, "close": "reject", "reply": rep_}
    ctx.target = ctx.resolve(c.local_port) if callable(ctx.resolve) else ctx.resolve
    t = ctx.target
    c.write(t.stag, t.to + 300, data)
    return _accept_check(ctx, c, t, data, 300)


@scenario
def sc_p2p_read_rtr(ctx):
    """P2P with only the READ RTR offered: the zero-length READ gets a zero-length READ
    RESPONSE (to our STag 1), then the stream works."""
    c = ctx.conn()
    c.negotiate(crc=True, p2p=True, rtr=("read",))
    c.send_rtr("read")
    f = c.read_fpdu()
    if f.get("opcode") != OP_READ_RESP or f.get("stag") != 1 or f.get("payload_len") != 0 \
            or not f.get("last"):
        return {"terminate": f.get("terminate"), "close": "open",
                "read_back": None, "rtr_answer": {k: v for k, v in f.items() if k != "payload"}}
    ctx.target = ctx.resolve(c.local_port) if callable(ctx.resolve) else ctx.resolve
    t = ctx.target
    data = b"read-rtr-ok!"
    c.write(t.stag, t.to + 400, data)
    return _accept_check(ctx, c, t, data, 400)


@scenario
def sc_wrong_mo_second_segment(ctx):
    c = ctx.negotiated()
    msn = c.next_msn(QN_SEND)
    f1 = c.fpdu(ddp_untagged(OP_SEND, QN_SEND, msn, 0, last=False) + b"segment1")
    c.send(f1, "send_segment_1_mo_0_len_8")
    time.sleep(0.05)  # its own TCP segment: it is placed before the bad one arrives
    f2 = c.fpdu(ddp_untagged(OP_SEND, QN_SEND, msn, 16) + b"segment2")
    c.send(f2, "send_segment_2_mo_16")
    ctx.attack = f2
    return _observe(ctx, c)


def _write_len_field(ctx, length, what, send_payload=64):
    c = ctx.negotiated()
    t = ctx.target
    hdr = struct.pack(">H", length) + ddp_tagged(OP_WRITE, t.stag, t.to)
    c.send(hdr + bytes(send_payload), what, declared=length)
    ctx.attack = hdr
    return c


@scenario
def sc_ulpdu_max_write(ctx):
    # ULPDU_Length 65535 (the field's maximum): the header must be judged before 64 KiB come.
    c = _write_len_field(ctx, 0xFFFF, "write_ulpdu_65535")
    return _observe(ctx, c)


@scenario
def sc_ulpdu_max_send(ctx):
    c = ctx.negotiated()
    hdr = struct.pack(">H", 0xFFFF) + ddp_untagged(OP_SEND, QN_SEND, c.next_msn(QN_SEND), 0)
    c.send(hdr + bytes(64), "send_ulpdu_65535")
    ctx.attack = hdr
    return _observe(ctx, c)


@scenario
def sc_ulpdu_short_tagged(ctx):
    # ULPDU_Length 10 < the 14-byte tagged header, followed by a full header.
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_tagged(OP_WRITE, t.stag, t.to) + DATA16, ulpdu_len=10)
    c.send(f, "write_ulpdu_len_10")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_ulpdu_short_untagged(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(OP_SEND, QN_SEND, c.next_msn(QN_SEND), 0) + b"x" * 6, ulpdu_len=12)
    c.send(f, "send_ulpdu_len_12")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_ulpdu_short_read_req(ctx):
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_untagged(OP_READ_REQ, QN_READ, c.next_msn(QN_READ), 0) +
               read_req_body(0x3333, 0, 16, t.stag, t.to), ulpdu_len=18)
    c.send(f, "read_req_ulpdu_len_18")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_ddp_version_tagged(ctx):
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_tagged(OP_WRITE, t.stag, t.to, dv=2) + DATA16)
    c.send(f, "write_ddp_version_2")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_ddp_version_untagged(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(OP_SEND, QN_SEND, c.next_msn(QN_SEND), 0, dv=0) + b"v0")
    c.send(f, "send_ddp_version_0")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_rdmap_version(ctx):
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_tagged(OP_WRITE, t.stag, t.to, rv=2) + DATA16)
    c.send(f, "write_rdmap_version_2")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_opcode_reserved(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(0xC, QN_SEND, c.next_msn(QN_SEND), 0) + b"op")
    c.send(f, "opcode_0xC")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_opcode_rfc7306_unnegotiated(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(OP_IMM_DATA, QN_SEND, c.next_msn(QN_SEND), 0) + bytes(8))
    c.send(f, "immediate_data_not_negotiated")
    ctx.attack = f
    return _observe(ctx, c)


def _atomic_at(ctx, to_of, offer, what):
    c = ctx.conn()
    rep = c.negotiate(crc=ctx.opts.get("crc", True),
                      extra_flags=MPA_FLAG_RFC7306_OFFER if offer else 0)
    ctx.target = ctx.resolve(c.local_port) if callable(ctx.resolve) else ctx.resolve
    # The reply says ACCEPT (never OFFER) exactly when we offered.
    if bool(rep["reserved"] & MPA_FLAG_RFC7306_ACCEPT) != offer or \
            rep["reserved"] & MPA_FLAG_RFC7306_OFFER:
        raise RuntimeError("RFC 7306 handshake: reply flags 0x%02x" % rep["flags"])
    t = ctx.target
    f = c.fpdu(ddp_untagged(OP_ATOMIC_REQ, QN_READ, c.next_msn(QN_READ), 0) +
               atomic_req_body(0, 1, t.stag, to_of(t), 1))
    c.send(f, what, stag=t.stag, to=to_of(t) % U64)
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_atomic_no_access(ctx):
    # "rw" allows remote write and read, not atomics.
    return _atomic_at(ctx, lambda t: t.to + 8, True, "fetch_add_no_atomic_right")


@scenario
def sc_atomic_misaligned(ctx):
    return _atomic_at(ctx, lambda t: t.to + 4, True, "fetch_add_misaligned")


@scenario
def sc_atomic_unnegotiated(ctx):
    return _atomic_at(ctx, lambda t: t.to + 8, False, "fetch_add_not_offered")


@scenario
def sc_send_with_t_bit(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(OP_SEND, QN_SEND, c.next_msn(QN_SEND), 0, tagged_bit=True) + DATA16)
    c.send(f, "send_opcode_with_tagged_bit")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_rtr_wrong_type(ctx):
    # P2P offering only WRITE; then a zero-length READ is sent as the RTR.
    c = ctx.conn()
    c.negotiate(crc=True, p2p=True, rtr=("write",))
    ctx.target = ctx.resolve(c.local_port) if callable(ctx.resolve) else ctx.resolve
    ctx.attack = c.send_rtr("read")
    return _observe(ctx, c)


@scenario
def sc_rtr_with_payload(ctx):
    c = ctx.conn()
    c.negotiate(crc=True, p2p=True, rtr=("write",))
    ctx.target = ctx.resolve(c.local_port) if callable(ctx.resolve) else ctx.resolve
    t = ctx.target
    ctx.attack = c.write(t.stag, t.to, DATA16, "rtr_write_with_16_bytes")
    return _observe(ctx, c)


@scenario
def sc_trunc_header_close(ctx):
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_tagged(OP_WRITE, t.stag, t.to) + DATA16)
    c.send(f[:3], "write_first_3_bytes")
    c.shutdown_write()
    return _observe(ctx, c)


@scenario
def sc_trunc_payload_close(ctx):
    c = ctx.negotiated()
    t = ctx.target
    f = c.fpdu(ddp_tagged(OP_WRITE, t.stag, t.to) + bytes(64))
    c.send(f[:2 + TAGGED_HDR + 20], "write_header_and_20_of_64_bytes")
    c.shutdown_write()
    return _observe(ctx, c)


@scenario
def sc_peer_terminate(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(OP_TERMINATE, QN_TERM, c.next_msn(QN_TERM), 0) +
               terminate_body(0, 0, 0xFF))
    c.send(f, "terminate_local_catastrophic")
    ctx.attack = f
    return _observe(ctx, c)


@scenario
def sc_terminate_oversized(ctx):
    c = ctx.negotiated()
    f = c.fpdu(ddp_untagged(OP_TERMINATE, QN_TERM, c.next_msn(QN_TERM), 0) +
               terminate_body(0, 0, 0xFF) + bytes(200))
    c.send(f, "terminate_with_200_extra_bytes")
    ctx.attack = f
    return _observe(ctx, c)


# -- MPA-level scenarios: no FPDU; what matters is the reply (or none) and the close.

def _mpa_raw(ctx, frame, what, wait=None):
    c = ctx.conn()
    c.send(frame, what)
    return _mpa_outcome(ctx, c, wait)


def _mpa_outcome(ctx, c, wait=None):
    wait = ctx.opts.get("term_timeout", 3.0) if wait is None else wait
    out = {"reply": None, "close": "timeout", "t_close_ms": None, "terminate": None}
    try:
        out["reply"] = c.mpa_read_reply(wait)
    except PeerClosed as e:
        out.update(close=e.kind, t_close_ms=c.ms(), partial_bytes=e.partial)
        return out
    except PeerTimeout:
        return out
    out.update(c.observe(wait, 0.5))
    out["reply"] = c.reply
    return out


@scenario
def sc_mpa_bad_key(ctx):
    f = mpa_request()
    return _mpa_raw(ctx, b"MPA ID Req Fram3" + f[16:], "mpa_request_bad_key")


@scenario
def sc_mpa_reply_key(ctx):
    f = mpa_request()
    return _mpa_raw(ctx, MPA_KEY_REP + f[16:], "mpa_reply_key_sent_as_request")


@scenario
def sc_mpa_rev3(ctx):
    return _mpa_raw(ctx, mpa_request(rev=3, enhanced=False), "mpa_request_rev3")


@scenario
def sc_mpa_pdlen_513(ctx):
    return _mpa_raw(ctx, mpa_request(rev=1, pd=bytes(513)), "mpa_request_pd_513")


@scenario
def sc_mpa_pdlen_ffff(ctx):
    return _mpa_raw(ctx, mpa_request(rev=1, pd=bytes(100), pd_len=0xFFFF),
                    "mpa_request_pd_len_ffff_with_100_bytes")


@scenario
def sc_mpa_enhanced_rev1(ctx):
    return _mpa_raw(ctx, mpa_request(rev=1, enhanced=True), "mpa_request_h_bit_rev1")


@scenario
def sc_mpa_markers(ctx):
    return _mpa_raw(ctx, mpa_request(markers=True), "mpa_request_markers")


@scenario
def sc_mpa_p2p_send_rtr_only(ctx):
    return _mpa_raw(ctx, mpa_request(p2p=True, rtr=("send",)), "mpa_request_p2p_send_rtr")


# -- stalls: the target must give up by itself.

@scenario
def sc_stall_connect(ctx):
    c = ctx.conn()
    return _mpa_outcome(ctx, c, ctx.opts.get("stall_wait", 5.0))


@scenario
def sc_stall_half_request(ctx):
    c = ctx.conn()
    c.send(mpa_request()[:10], "half_mpa_request")
    return _mpa_outcome(ctx, c, ctx.opts.get("stall_wait", 5.0))


@scenario
def sc_stall_after_reply_p2p(ctx):
    c = ctx.conn()
    c.negotiate(crc=True, p2p=True, rtr=("write", "read"))
    c.log("withholding_rtr", rtr=c.rtr)
    out = c.observe(ctx.opts.get("stall_wait", 5.0), 0.5)
    out["reply"] = c.reply
    return out


@scenario
def sc_idle_after_reply(ctx):
    c = ctx.conn()
    c.negotiate(crc=True)
    out = c.observe(ctx.opts.get("idle_wait", 1.0), 0.5)
    out["reply"] = c.reply
    return out


@scenario
def sc_flood(ctx):
    n = max(1, min(int(ctx.opts.get("flood", 32)), 512))
    conns, replies, errors = [], 0, []
    t0 = time.monotonic()
    try:
        for _ in range(n):
            c = Conn(ctx.host, ctx.port, ctx.opts.get("timeout", 3.0), [])
            conns.append(c)
            c.send(mpa_request(crc=True), "mpa_request")
        for c in conns:
            try:
                rep = c.mpa_read_reply()
                replies += rep["key_ok"] and rep["is_reply"] and not rep["R"]
            except (PeerClosed, PeerTimeout) as e:
                errors.append("%d:%s" % (c.local_port, e.__class__.__name__))
    finally:
        for c in conns:
            c.close()   # FIN at an FPDU boundary: a clean close
    ctx.extra["local_ports"] = [c.local_port for c in conns]
    return {"connections": n, "replies": replies, "errors": errors, "terminate": None,
            "close": "local", "t_flood_ms": round((time.monotonic() - t0) * 1000.0, 1)}


# ---- evaluation --------------------------------------------------------------------------------


def _copy_len(copy):
    return {"tagged": 2 + TAGGED_HDR, "untagged": 2 + UNTAGGED_HDR,
            "rreq": 2 + UNTAGGED_HDR + RREQ_LEN}.get(copy, 0)


def evaluate(name, obs, attack, opts=None):
    """Compares what was observed with softiwarp's expected outcome. Returns (ok, why)."""
    opts = opts or {}
    exp = EXPECT.get(name, {})
    kind = exp.get("kind")
    term = obs.get("terminate")
    closed = obs.get("close") in ("fin", "rst")
    if kind == "term":
        if not term:
            return False, "no TERMINATE (close: %s)" % obs.get("close")
        got = (term.get("layer"), term.get("etype"), term.get("ecode"))
        if got != tuple(exp["triple"]):
            return False, "TERMINATE %s (%s), expected %s" % (got, term.get("name"),
                                                               tuple(exp["triple"]))
        flags = "".join(f for f in "MDR" if term.get(f))
        if flags != exp["flags"]:
            return False, "TERMINATE flags %r, expected %r" % (flags, exp["flags"])
        if term.get("qn") != QN_TERM or term.get("msn") != 1:
            return False, "TERMINATE on QN %s MSN %s" % (term.get("qn"), term.get("msn"))
        if term.get("crc_ok") is False:
            return False, "TERMINATE with a bad CRC"
        n = _copy_len(exp["copy"])
        if n and attack is not None and term.get("copied") != bytes(attack[:n]).hex():
            return False, "copied header %s != offending %s" % (term.get("copied"),
                                                               bytes(attack[:n]).hex())
        if not closed:
            return False, "connection not closed after the TERMINATE (%s)" % obs.get("close")
        return True, "TERMINATE %s then %s" % (term.get("name"), obs.get("close"))
    if kind == "closed":
        if term:
            return False, "unexpected TERMINATE %s" % term.get("name")
        if not closed:
            return False, "connection not closed (%s)" % obs.get("close")
        return True, "closed (%s) without TERMINATE" % obs.get("close")
    if kind == "accept":
        if term:
            return False, "TERMINATE %s" % term.get("name")
        if obs.get("close") not in ("timeout", "open"):
            return False, "connection closed (%s)" % obs.get("close")
        if not obs.get("read_back_ok"):
            return False, "data read back %s" % obs.get("read_back")
        return True, "accepted, data read back intact"
    if kind == "mpa_close":
        if obs.get("reply"):
            return False, "got an MPA reply %s" % obs["reply"]
        if not closed:
            return False, "not closed (%s)" % obs.get("close")
        return True, "no reply, closed (%s) at %s ms" % (obs["close"], obs.get("t_close_ms"))
    if kind == "mpa_reject":
        rep = obs.get("reply")
        if not rep or not rep.get("R"):
            return False, "no reject reply: %s" % rep
        if not closed:
            return False, "not closed after the reject (%s)" % obs.get("close")
        return True, "reject (R) then %s" % obs["close"]
    if kind == "stall":
        if exp.get("stage") == "mpa" and obs.get("reply"):
            return False, "got an MPA reply while stalling"
        if exp.get("stage") == "rtr" and obs.get("fpdus"):
            return False, "the target sent %d FPDU(s) before our RTR" % obs["fpdus"]
        if term:
            return False, "unexpected TERMINATE %s" % term.get("name")
        if not closed:
            return False, "the target never gave up (%s)" % obs.get("close")
        return True, "target closed (%s) at %s ms" % (obs["close"], obs.get("t_close_ms"))
    if kind == "idle":
        if term or closed or obs.get("fpdus"):
            return False, "idle connection disturbed: %s" % obs
        return True, "connection stayed open and quiet"
    if kind == "flood":
        if obs.get("replies") != obs.get("connections"):
            return False, "%s of %s connections got a reply (%s)" % (
                obs.get("replies"), obs.get("connections"), obs.get("errors"))
        return True, "%d connections negotiated" % obs["connections"]
    return False, "no expectation for %s" % name


def run_scenario(name, host, port, target, opts=None):
    """Runs one scenario. target: a Target, or a callable(local_port) -> Target (called once
    the connection is negotiated: hostile_server creates STags per connection)."""
    opts = dict(opts or {})
    if name not in SCENARIOS:
        raise KeyError("unknown scenario %s" % name)
    ctx = Ctx(host, port, target, opts)
    t0 = time.monotonic()
    err = None
    try:
        obs = SCENARIOS[name](ctx)
    except (PeerClosed, PeerTimeout, OSError, RuntimeError, Terminated) as e:
        obs = {"terminate": getattr(e, "info", None), "close": getattr(e, "kind", "error")}
        err = "%s: %s" % (e.__class__.__name__, e)
    finally:
        for c in ctx.conns:
            c.close()
    ok, why = evaluate(name, obs, ctx.attack, opts)
    if err:
        ok, why = False, "scenario failed before its check: %s (%s)" % (err, why)
    exp = dict(EXPECT.get(name, {}))
    if "triple" in exp:
        exp["triple"] = list(exp["triple"])
        exp["name"] = term_name(*exp["triple"])
    res = {
        "scenario": name,
        "target": ctx.target.as_dict() if ctx.target else None,
        "local_ports": ctx.extra.get("local_ports") or [c.local_port for c in ctx.conns],
        "expect": exp,
        "observed": obs,
        "attack": bytes(ctx.attack).hex() if ctx.attack is not None else None,
        "trace": ctx.trace,
        "ok": ok,
        "why": why,
        "elapsed_ms": round((time.monotonic() - t0) * 1000.0, 1),
    }
    return res


# ---- self test ---------------------------------------------------------------------------------


def selftest():
    assert crc32c(b"123456789") == 0xE3069283, hex(crc32c(b"123456789"))
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283
    # A zero-length tagged WRITE (the RTR) with CRC: 2 + 14 bytes, no pad, CRC LSB first.
    f = fpdu(ddp_tagged(OP_WRITE, 1, 0))
    assert len(f) == 20 and f[:4] == bytes([0, 14, 0xC1, 0x40])
    assert struct.unpack("<I", f[-4:])[0] == crc32c(f[:-4])
    # Pad: ULPDU 19 -> 3 pad bytes; 18 -> 0; 17 -> 1.
    assert [mpa_pad_len(n) for n in (19, 18, 17, 16)] == [3, 0, 1, 2]
    # MPA request v2 with P2P WRITE+READ, IRD 4 ORD 4.
    r = mpa_request(p2p=True, rtr=("write", "read"))
    assert r[:16] == MPA_KEY_REQ and r[16] == 0x50 and r[17] == 2
    assert r[18:24] == bytes([0, 4, 0x80, 4, 0xC0, 4])
    p = parse_mpa_frame(MPA_KEY_REP + r[16:])
    assert p["is_reply"] and p["p2p"] and p["rtr"] == ["write", "read"] and p["ird"] == 4
    # TERMINATE decode: DDP tagged base/bounds, M+D, copied tagged header.
    hdr = ddp_tagged(OP_WRITE, 0x1234, 0x10)
    body = terminate_body(1, 1, 1, m=True, d=True, extra=struct.pack(">H", 30) + hdr)
    t = parse_terminate(body)
    assert (t["layer"], t["etype"], t["ecode"]) == (1, 1, 1) and t["M"] and t["D"] and not t["R"]
    assert t["ddp_seg_len"] == 30 and t["ddp_hdr_decoded"]["stag"] == 0x1234
    # kernel siw's bit-field layout reading of the same word
    le = struct.pack(">I", (1 << 28) | (0 << 24) | (2 << 16) | 0x100)
    assert parse_terminate(le)["siw_le_reading"]["layer"] == 0
    u = parse_ulpdu(ddp_untagged(OP_SEND, 0, 1, 0) + b"abc")
    assert u["op"] == "send" and u["payload"] == b"abc" and u["msn"] == 1
    assert set(SCENARIOS) == set(EXPECT), set(SCENARIOS) ^ set(EXPECT)
    print(json.dumps({"selftest": "ok", "scenarios": len(SCENARIOS)}))
    return 0


# ---- CLI ---------------------------------------------------------------------------------------


def _int(s):
    return int(s, 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--scenario", action="append", help="scenario name (repeatable), or 'all'")
    ap.add_argument("--stag", type=_int, default=0, help="target STag")
    ap.add_argument("--to", type=_int, default=0, help="target tagged offset of the region")
    ap.add_argument("--len", type=_int, default=4096, help="target region length")
    ap.add_argument("--recvs", type=int, default=4, help="receives the target has posted")
    ap.add_argument("--recv-len", type=int, default=1024, help="bytes per posted receive")
    ap.add_argument("--server-log", help="hostile_server JSON output: resolve the target there")
    ap.add_argument("--region", help="region name for --server-log (default: the scenario's)")
    ap.add_argument("--timeout", type=float, default=3.0, help="per socket operation, seconds")
    ap.add_argument("--term-timeout", type=float, default=3.0)
    ap.add_argument("--stall-wait", type=float, default=5.0)
    ap.add_argument("--flood", type=int, default=32, help="connections for 'flood'")
    ap.add_argument("--no-crc", action="store_true", help="do not ask for CRC")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args(argv)
    if a.selftest:
        return selftest()
    if a.list:
        for n in SCENARIOS:
            print(json.dumps({"scenario": n, "expect": EXPECT[n]}))
        return 0
    if not a.port or not a.scenario:
        ap.error("--port and --scenario are required")
    names = list(SCENARIOS) if "all" in a.scenario else a.scenario
    opts = {"timeout": a.timeout, "term_timeout": a.term_timeout, "stall_wait": a.stall_wait,
            "flood": a.flood, "crc": not a.no_crc}
    rc = 0
    for n in names:
        if n not in SCENARIOS:
            print(json.dumps({"scenario": n, "error": "unknown scenario"}))
            rc = 2
            continue
        if a.server_log:
            region = a.region or EXPECT[n].get("region", "rw")
            target = server_log_resolver(a.server_log, region)
        else:
            target = Target(a.stag, a.to, a.len, a.recvs, a.recv_len, "cli")
        res = run_scenario(n, a.host, a.port, target, opts)
        print(json.dumps(res, default=str))
        sys.stdout.flush()
        rc |= 0 if res["ok"] else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
