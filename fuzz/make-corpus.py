#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Regenerates the seed corpora fuzz/corpus/<target>/ from the captures in tests/data/pcaps.

Every seed is named by the first 16 hex digits of the SHA-256 of its content. The input layouts
are the ones documented at the top of each fuzz/fuzz_<target>.c (and in fuzz/README.md):

  rx    each direction's FPDU stream (the bytes after the MPA frames), cut at an FPDU boundary,
        behind fuzz_rx's parameter bytes; once as captured (the STags belong to other machines,
        so the parser stops early) and once rewritten onto fuzz_rx's region table (STag 0x15a,
        ORQ entries for the READ RESPONSEs, CRCs recomputed) so the seed reaches deep states,
        also with MPA markers inserted.
  mpa   the MPA request and reply of each connection (and the guest-to-host request variants)
        behind configuration bytes like the ones kernel siw ran with.
  term  TERMINATE control words and bodies built from real FPDU headers of the captures (RFC
        layout and kernel siw's little-endian bit-field layout).
  txrx  message sequences (opcode, length) as the captures show them, with their MULPDU.

Usage: fuzz/make-corpus.py [--check]   (--check: only report what would change)
Python 3 standard library only.
"""

import hashlib
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PCAPS = os.path.join(ROOT, "tests", "data", "pcaps")
OUT = os.path.join(ROOT, "fuzz", "corpus")

MAX_RX_SEED = 20000  # bytes of stream per rx seed (libFuzzer keeps max_len near the seeds)

# ---- pcap + TCP -----------------------------------------------------------------------------


def read_pcap(path):
    """Yields the TCP segments of a classic pcap: (src, sport, dst, dport, seq, flags, payload)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise ValueError(path + ": not a classic pcap file")
    link = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
    off = 24
    while off + 16 <= len(data):
        caplen = struct.unpack(e + "I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if link == 1:  # Ethernet, VLAN tags skipped
            p, et = 12, None
            while p + 2 <= len(pkt):
                et = struct.unpack(">H", pkt[p:p + 2])[0]
                if et in (0x8100, 0x88A8):
                    p += 4
                    continue
                break
            ip = pkt[p + 2:]
        elif link == 113:  # Linux cooked v1
            et, ip = struct.unpack(">H", pkt[14:16])[0], pkt[16:]
        elif link == 276:  # Linux cooked v2
            et, ip = struct.unpack(">H", pkt[0:2])[0], pkt[20:]
        elif link in (101, 12, 14):
            et, ip = None, pkt
        else:
            raise ValueError("%s: link type %d" % (path, link))
        if not ip:
            continue
        ver = ip[0] >> 4
        if ver == 4:
            ihl = (ip[0] & 15) * 4
            tot = struct.unpack(">H", ip[2:4])[0] or len(ip)
            if ip[9] != 6 or struct.unpack(">H", ip[6:8])[0] & 0x3FFF:
                continue
            src, dst, tcp = ip[12:16], ip[16:20], ip[ihl:tot]
        elif ver == 6:
            if ip[6] != 6:
                continue
            plen = struct.unpack(">H", ip[4:6])[0] or len(ip) - 40
            src, dst, tcp = ip[8:24], ip[24:40], ip[40:40 + plen]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        yield src, sport, dst, dport, seq, tcp[13], tcp[doff:]


def streams(path):
    """Rebuilds each TCP direction's byte stream: {(src, sport, dst, dport): bytes}, in order
    of first appearance."""
    flows = {}
    for src, sport, dst, dport, seq, flags, payload in read_pcap(path):
        fl = flows.setdefault((src, sport, dst, dport), {"isn": None, "segs": []})
        if flags & 0x02:
            fl["isn"] = seq
            seq = (seq + 1) & 0xFFFFFFFF
        if payload and not flags & 0x04:
            fl["segs"].append((seq, payload))
    out = {}
    for key, fl in flows.items():
        segs = fl["segs"]
        if not segs:
            out[key] = b""
            continue
        base = (fl["isn"] + 1) & 0xFFFFFFFF if fl["isn"] is not None else segs[0][0]
        buf = bytearray()
        for seq, payload in sorted(((s - base) & 0xFFFFFFFF, p) for s, p in segs):
            if seq > len(buf):
                break  # a hole: the stream ends before it
            buf += payload[len(buf) - seq:]
        out[key] = bytes(buf)
    return out


def connections(path):
    """[(request stream, reply stream)] for every MPA connection of a capture."""
    st = streams(path)
    conns = []
    for (src, sport, dst, dport), data in st.items():
        if data.startswith(b"MPA ID Req Frame"):
            conns.append((data, st.get((dst, dport, src, sport), b"")))
    return conns


def mpa_len(frame):
    return 20 + struct.unpack(">H", frame[18:20])[0]


# ---- iWARP ----------------------------------------------------------------------------------

CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    CRC_TABLE.append(_c)


def crc32c(data, crc=0xFFFFFFFF):
    """Running CRC32c (RFC 5044 §6.1 / iSCSI); the final value is crc ^ 0xFFFFFFFF."""
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def pad(ulpdu):
    return (4 - (ulpdu + 2) % 4) % 4


def fpdus(stream):
    """Splits a stream into FPDUs: [(bytes without markers)], stops at a partial one."""
    out, off = [], 0
    while off + 2 <= len(stream):
        ulpdu = struct.unpack(">H", stream[off:off + 2])[0]
        total = 2 + ulpdu + pad(ulpdu) + 4
        if off + total > len(stream):
            break
        out.append(bytearray(stream[off:off + total]))
        off += total
    return out


def hdr_len(f):
    if f[2] & 0x80:
        return 16
    op = f[3] & 15
    return {1: 48, 7: 24}.get(op, 20)


def set_crc(f, on):
    body = bytes(f[:-4])
    f[-4:] = struct.pack("<I", crc32c(body) ^ 0xFFFFFFFF) if on else b"\0\0\0\0"


def cut(fp, limit):
    """The first FPDUs that fit in limit bytes (at least one)."""
    out, n = [], 0
    for f in fp:
        if out and n + len(f) > limit:
            break
        out.append(f)
        n += len(f)
    return out


def add_markers(fp, crc):
    """Lays FPDUs out with an MPA marker every 512 bytes (RFC 5044 §5): the pointer goes back
    to the start of the FPDU the marker falls in; a marker where an FPDU starts belongs to it;
    markers before the CRC are covered by it."""
    out = bytearray()
    for f in fp:
        start = len(out)
        body = f[:-4]
        c = 0xFFFFFFFF
        i = 0
        while i < len(body):
            if len(out) % 512 == 0:
                m = struct.pack(">HH", 0, len(out) - start)
                out += m
                c = crc32c(m, c)
            k = min(len(body) - i, 512 - len(out) % 512)
            out += body[i:i + k]
            c = crc32c(body[i:i + k], c)
            i += k
        if len(out) % 512 == 0:  # a marker between pad and CRC is inside the FPDU
            m = struct.pack(">HH", 0, len(out) - start)
            out += m
            c = crc32c(m, c)
        out += struct.pack("<I", c ^ 0xFFFFFFFF) if crc else b"\0\0\0\0"
    return bytes(out)


# ---- seeds ----------------------------------------------------------------------------------

seeds = {"rx": {}, "mpa": {}, "term": {}, "txrx": {}}


def seed(target, data, why):
    name = hashlib.sha256(data).hexdigest()[:16]
    seeds[target].setdefault(name, (data, why))


# fuzz_rx's region table (see fuzz_rx.c): STag 0x15a at TO 0x10000 takes WRITEs, READ sources
# and READ RESPONSE sinks; 32 posted receives of 4 KiB and more (29 usable in order).
RX_MR1_STAG, RX_MR1_TO, RX_MR1_LEN = 0x15A, 0x10000, 65536 + 4096
RX_CRC, RX_MARKERS, RX_FIXUP = 0x01, 0x02, 0x08


def rx_remap(fp):
    """Rewrites FPDUs onto fuzz_rx's table. Returns (fpdus, orq entries) or None."""
    out, orq, sends = [], [], 0
    tag_base = {}
    msg_to = None
    for f in fp:
        f = bytearray(f)
        op = f[3] & 15
        last = f[2] & 0x40
        if f[2] & 0x80:
            stag, to = struct.unpack(">IQ", f[4:16])
            plen = len(f) - 4 - pad(struct.unpack(">H", f[:2])[0]) - 16
            if op == 2:  # READ RESPONSE: answers ORQ entry k, sink at MR1 offset 0
                if msg_to is None:
                    if len(orq) == 15:  # fuzz_rx takes 15 ORQ entries
                        break
                    msg_to = to
                    orq.append(0)
                orq[-1] += plen
                new = RX_MR1_TO + (to - msg_to)
            else:
                base = tag_base.setdefault(stag, to)
                new = RX_MR1_TO + (to - base)
            if new + plen > RX_MR1_TO + RX_MR1_LEN or new < RX_MR1_TO:
                return None
            f[4:16] = struct.pack(">IQ", RX_MR1_STAG, new)
            if last:
                msg_to = None
        elif op == 1:
            size = struct.unpack(">I", f[32:36])[0]
            if size > RX_MR1_LEN:
                return None
            f[36:48] = struct.pack(">IQ", RX_MR1_STAG, RX_MR1_TO)
        elif op in (3, 4, 5, 6):
            if struct.unpack(">I", f[16:20])[0] == 0:
                sends += 1
                if sends > 28:
                    break
        out.append(f)
    entries = b"".join(struct.pack(">BH", 0, 0) + struct.pack(">I", n)[1:] for n in orq)
    return out, entries, len(orq)


# Which streams become rx seeds (a few dozen in all): rping as captured too (its foreign STags
# stop the parser early, which is a state worth keeping), perftest's measured connection with
# markers too when CRC is on, and the parameter exchange once.
RX_PICKS = {
    ("single-guest-lo-crc", "crc-rping.pcap"),
    ("single-guest-lo-crc", "crc-read_bw.pcap"),
    ("single-guest-lo-crc", "crc-send_bw.pcap"),
    ("single-guest-lo-crc", "crc-write_bw_64k.pcap"),
    ("two-guests-eth1", "2g-rping.pcap"),
    ("two-guests-eth1", "2g-read_bw_64k.pcap"),
    ("two-guests-eth1", "2g-send_lat.pcap"),
    ("two-guests-eth1-crc", "2g-crc-send_bw.pcap"),  # Sends of several FPDUs
    ("two-guests-eth1-gso", "2g-gso-write_bw_64k.pcap"),
}


def rx_seeds(folder, name, crc):
    conns = connections(os.path.join(PCAPS, folder, name))
    rping = name.endswith("rping.pcap")
    for ci, (req, rep) in enumerate(conns):
        if ci < len(conns) - 1 and name != "crc-send_bw.pcap":
            continue  # perftest's parameter exchange: once is enough
        for d, st in (("i2r", req), ("r2i", rep)):
            if not st.startswith(b"MPA ID Re"):
                continue
            fp = fpdus(st[mpa_len(st):])
            if not fp:
                continue
            flags = RX_CRC if crc else 0
            why = "%s/%s conn %d %s" % (folder, name, ci, d)
            raw = cut(fp, MAX_RX_SEED)
            if rping:
                seed("rx", bytes([flags, 0, 0, 0]) + b"".join(raw), why + ", as captured")
            r = rx_remap(raw)
            if not r:
                continue
            mapped, orq, norq = r
            for f in mapped:
                set_crc(f, crc)
            hdr = bytes([flags, 0x37, 0, norq]) + orq
            seed("rx", hdr + b"".join(mapped), why + ", on fuzz_rx's regions")
            if crc:
                # the same with markers, CRC covering them
                hdr = bytes([RX_CRC | RX_MARKERS | RX_FIXUP, 0x21, 0, norq]) + orq
                seed("rx", hdr + add_markers(mapped, True), why + ", markers + CRC")


# fuzz_mpa configuration byte: bit 0 rev 2, bits 1-2 CRC mode, bit 7 GSO (see fuzz_mpa.c)
def mpa_cfg(rev2=True, crc=0, gso=False, p2p=False, relaxed=False):
    return (1 if rev2 else 0) | crc << 1 | (0x20 if p2p else 0) | (0x40 if relaxed else 0) | (
        0x80 if gso else 0)


def mpa_seed(req, rep, crc, gso, why, p2p=False, rtr=0):
    ird = struct.unpack(">H", req[20:22])[0] & 0x3FFF if len(req) >= 24 else 1
    ord_ = struct.unpack(">H", req[22:24])[0] & 0x3FFF if len(req) >= 24 else 1
    c = mpa_cfg(req[17] == 2, 2 if crc else 0, gso, p2p)
    hdr = bytes([c, rtr | 0x18, c, rtr]) + struct.pack(">HHHH", ird, ord_, ird, ord_) + b"\x00"
    seed("mpa", hdr + req + rep, why)


def term_seeds(fp, why):
    """TERMINATEs a receiver of these FPDUs could send back (control word + body)."""
    done = set()
    for f in fp:
        key = (f[2] & 0x80, f[3] & 15)
        if key in done:
            continue
        done.add(key)
        if f[2] & 0x80:
            layer, etype, code, m, d, r, body = 1, 1, 0, 1, 1, 0, bytes(f[:16])
        elif f[3] & 15 == 1:
            layer, etype, code, m, d, r, body = 0, 1, 0, 1, 1, 1, bytes(f[:48])
        else:
            layer, etype, code, m, d, r, body = 1, 2, 2, 1, 1, 0, bytes(f[:20])
        ctrl = layer << 28 | etype << 24 | code << 16 | m << 15 | d << 14 | r << 13
        # kernel siw's layout: nibbles swapped, M/D/R at 0x100/0x200/0x400
        swapped = etype << 28 | layer << 24 | code << 16 | m << 8 | d << 9 | r << 10
        for cw in (ctrl, swapped):
            # build side: the same triple, the header as the offending one, room for it
            b5 = layer | etype << 4
            b12 = (1 if r else 0) | 2 | (48 << 2 & 0xFC)
            hdr = struct.pack(">IB", cw, len(body)) + bytes([b5, len(body), code]) + \
                struct.pack(">I", 0) + bytes([b12])
            seed("term", hdr + body, "%s opcode %d header, ctrl %08x" % (why, key[1], cw))


def txrx_seeds(fp, crc, why):
    """The message sequence of a stream (opcode, length) with its largest ULPDU as MULPDU."""
    msgs, cur, mulpdu = [], {}, 0
    for f in fp:
        ulpdu = struct.unpack(">H", f[:2])[0]
        mulpdu = max(mulpdu, ulpdu)
        op = f[3] & 15
        plen = len(f) - 4 - pad(ulpdu) - hdr_len(f)
        key = "t" if f[2] & 0x80 else "u"
        cur[key] = cur.get(key, 0) + plen
        if f[2] & 0x40:
            n = cur.pop(key)
            if op == 1:
                n = struct.unpack(">I", f[32:36])[0]
            sel = {0: 0, 1: 5, 2: 6, 3: 1, 4: 3, 5: 2, 6: 4}.get(op)
            if sel is None:
                continue
            large = 0x80 if n > 2048 else 0
            msgs.append(bytes([sel | large]) + struct.pack(">I", n)[1:] +
                        struct.pack(">H", (len(msgs) * 64) % 4096) + bytes([0x21, len(msgs)]))
        if len(msgs) == 24:
            break
    if not msgs:
        return
    mulpdu = max(mulpdu, 47)
    for flags, split in ((1 if crc else 0, 0), ((1 if crc else 0) | 2 | 4, 7)):
        seed("txrx", bytes([flags]) + struct.pack(">H", mulpdu) + bytes([split]) + b"".join(msgs),
             why)


def fpdu(ddp, op, rest, payload=b"", crc=True):
    """One FPDU: DDP control byte, RDMAP opcode, the rest of the header, payload."""
    h = bytes([ddp, 0x40 | op]) + rest + payload
    f = struct.pack(">H", len(h)) + h + bytes(pad(len(h)))
    return f + (struct.pack("<I", crc32c(f) ^ 0xFFFFFFFF) if crc else b"\0\0\0\0")


def untagged(op, qn, msn, rest=b"", payload=b"", last=True, mo=0, inv=0):
    return fpdu(0x41 if last else 0x01, op, struct.pack(">IIII", inv, qn, msn, mo) + rest,
                payload)


def tagged(op, stag, to, payload=b"", last=True):
    return fpdu(0xC1 if last else 0x81, op, struct.pack(">IQ", stag, to), payload)


def synthetic_seeds():
    """What the captures do not show: RFC 6581 RTRs, RFC 7306 messages, a TERMINATE."""
    send = untagged(3, 0, 1, payload=b"x" * 16)
    write = tagged(0, RX_MR1_STAG, RX_MR1_TO + 8, bytes(range(100)))
    # P2P responder: the negotiated zero-length RTR first, then traffic (flags bits 5-6: RTR)
    seed("rx", bytes([0x01 | 2 << 5, 0, 0, 0]) + tagged(0, 1, 0) + send + write,
         "synthetic: WRITE RTR, Send, Write")
    seed("rx", bytes([0x01 | 3 << 5, 0, 0, 0]) +
         untagged(1, 1, 1, struct.pack(">IQIIQ", 1, 0, 0, 1, 0)) + untagged(3, 0, 1),
         "synthetic: READ RTR, Send")
    seed("rx", bytes([0x01 | 1 << 5, 1, 0, 0]) + untagged(3, 0, 1) +
         untagged(3, 0, 2, payload=b"y"), "synthetic: SEND RTR, Send")
    # RFC 7306: Immediate Data, an Atomic Request on 0x15a, an Atomic Response for ORQ entry 0
    req_id = 0x1234
    orq = struct.pack(">BH", 0x40, 0) + struct.pack(">I", req_id)[1:]
    areq = untagged(10, 1, 1, struct.pack(">IIIQQQQQ", 0, 7, RX_MR1_STAG, RX_MR1_TO, 5, 0, 0, 0))
    aresp = untagged(11, 3, 1, struct.pack(">IQ", req_id, 99))
    seed("rx", bytes([0x01 | 0x04, 0, 0, 1]) + orq + untagged(8, 0, 1, b"12345678") + areq +
         aresp, "synthetic: RFC 7306 Immediate Data, Atomic Request, Atomic Response")
    # a TERMINATE after a Send: DDP tagged "invalid STag" with the tagged header copied
    body = struct.pack(">H", 14) + write[2:16]
    term = untagged(7, 2, 1, struct.pack(">I", 1 << 28 | 1 << 24 | 0 << 16 | 0xC000) + body)
    seed("rx", bytes([0x01, 0, 0, 0]) + send + term, "synthetic: Send, TERMINATE")
    # txrx with RFC 7306 on: Immediate Data (+SE), Atomic Request and Response, then a Write
    msgs = b"".join(bytes([k, 0, 0, 0, 0, 64, 0x11, k]) for k in (7, 8, 9, 10, 9, 0, 1, 10))
    seed("txrx", bytes([0x11]) + struct.pack(">H", 1442) + bytes([0]) + msgs,
         "synthetic: RFC 7306 messages, CRC")
    seed("txrx", bytes([0x13]) + struct.pack(">H", 200) + bytes([1]) + msgs,
         "synthetic: RFC 7306 messages, CRC and markers, byte by byte")


def main():
    check = "--check" in sys.argv[1:]
    for folder in sorted(os.listdir(PCAPS)):
        path = os.path.join(PCAPS, folder)
        if not os.path.isdir(path):
            continue
        crc = "crc" in folder
        gso = "gso" in folder
        for name in sorted(os.listdir(path)):
            if not name.endswith(".pcap"):
                continue
            conns = connections(os.path.join(path, name))
            for ci, (req, rep) in enumerate(conns):
                why = "%s/%s conn %d" % (folder, name, ci)
                rq = req[:mpa_len(req)]
                rp = rep[:mpa_len(rep)] if rep.startswith(b"MPA ID Rep") else b""
                if folder == "guest-to-host" or name.endswith(("rping.pcap", "read_bw.pcap")):
                    mpa_seed(rq, rp, crc or rq[16] & 0x40, gso or rq[16] & 0x08, why)
                if folder == "guest-to-host" or not rp:
                    continue
                # the first FPDUs of each direction
                for st, d in ((req[len(rq):], "i2r"), (rep[len(rp):], "r2i")):
                    fp = fpdus(st)
                    if folder in ("single-guest-lo-crc", "two-guests-eth1") and \
                            name.endswith(("rping.pcap", "read_bw.pcap")):
                        term_seeds(fp, "%s %s" % (why, d))
                    if folder in ("single-guest-lo-crc", "two-guests-eth1-gso") and ci == len(
                            conns) - 1:
                        txrx_seeds(fp, crc, "%s %s" % (why, d))
            if (folder, name) in RX_PICKS:
                rx_seeds(folder, name, crc)
    synthetic_seeds()
    # P2P: kernel siw's request with a reply choosing the WRITE RTR, and a v1 exchange
    g2h = os.path.join(PCAPS, "guest-to-host")
    with open(os.path.join(g2h, "mpa-req-peer_to_peer.bin"), "rb") as f:
        p2p = f.read()
    rep = b"MPA ID Rep Frame" + bytes([0x10, 2]) + struct.pack(">HHH", 4, 0x8001, 0x8001)
    mpa_seed(p2p, rep, False, False, "guest-to-host P2P request, WRITE RTR reply", True, 6)
    with open(os.path.join(g2h, "mpa-req-mpa_version1.bin"), "rb") as f:
        v1 = f.read()
    mpa_seed(v1, b"MPA ID Rep Frame" + bytes([0, 1, 0, 0]), False, False, "rev 1 exchange")

    total = 0
    for target, items in seeds.items():
        d = os.path.join(OUT, target)
        have = set(os.listdir(d)) if os.path.isdir(d) else set()
        want = set(items)
        size = sum(len(v[0]) for v in items.values())
        total += size
        print("%-5s %3d seeds, %7d bytes (%d new, %d stale)" %
              (target, len(want), size, len(want - have), len(have - want)))
        if check:
            continue
        os.makedirs(d, exist_ok=True)
        for name in have - want:
            os.remove(os.path.join(d, name))
        for name, (data, _why) in items.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
