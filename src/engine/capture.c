// SPDX-License-Identifier: MIT
/*
 * Opt-in packet capture: SIW_CAPTURE=/path/file.pcap writes every iWARP connection of the
 * process, both directions, to a classic pcap file that Wireshark/tshark decode ("%p" in the
 * path becomes the pid, "%%" a percent sign; one file per process).
 *
 * The bytes are the real stream bytes: what sendmsg() took (the batch iovecs, as far as it took
 * them) and what recv()/readv() returned (staging or the direct iovecs), copied right after the
 * system call, before the parser looks at them. They are wrapped into synthetic
 * Ethernet/IPv4-or-IPv6/TCP segments with the connection's real addresses and ports: a
 * three-way handshake first (window scale 14 so that TCP analysis sees no "window full"), then
 * the MPA request and reply the connection manager exchanged (handed over in struct eng_conn;
 * rebuilt from the negotiated parameters when a caller of eng_qp_connect does not pass them),
 * then the FPDUs, each direction with consistent sequence and acknowledgment numbers (a pure ACK
 * is inserted when a direction runs 256 MiB ahead of the other), segments of at most
 * CAP_MAX_SEG payload bytes, and a FIN per side at the end. tshark's iWARP heuristic keys on
 * the MPA request, so every FPDU decodes (its TCP reassembly joins FPDUs that span segments).
 *
 * Failed MPA exchanges the CM never handed over (rejects, refused requests, timeouts) are
 * written through eng_capture_mpa().
 *
 * Limits (see also docs/OBSERVABILITY.md):
 *  - it costs: every byte is copied once more and checksummed under one process-wide lock, and
 *    a file write follows; use it to debug, not to benchmark. SIW_CAPTURE_MAX_MB stops the
 *    capture (the file stays valid) when the file reaches that size.
 *  - timestamps are when the engine saw the bytes, not when they were on the wire; there are no
 *    retransmissions, no real TCP options, and the segment boundaries are the system calls'.
 *  - bytes the engine discards unread after a QP failed, and the TERMINATE the CM sends when an
 *    MPA reply does not fit the request, are not in the file.
 *  - the file is buffered: flushed at connection set-up and end, at least once a second while
 *    traffic flows, and at exit; a process killed by a signal loses the unflushed tail.
 *  - both ends of a connection in one process (engine tests): it is written once, from the
 *    end that was handed over first.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "priv.h"

#define CAP_MAX_SEG   65495        /* payload bytes per segment (IPv4 total <= 65535) */
#define CAP_ACK_EVERY (256u << 20) /* a pure ACK when a side runs this far ahead */
#define CAP_SNAPLEN   262144
#define CAP_HDR_MAX   (14 + 40 + 28) /* Ethernet + IPv6 + TCP with SYN options */
#define CAP_FLUSH_NS  1000000000ull

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_PSH 0x08
#define TH_ACK 0x10

bool eng_cap_on;

static struct {
	pthread_mutex_t lock;
	pthread_once_t once;
	char tmpl[PATH_MAX]; /* SIW_CAPTURE as given */
	char path[PATH_MAX]; /* the file of this process */
	FILE *f;
	pid_t pid;    /* owner of f */
	bool stopped; /* error or size limit: nothing more is written */
	uint64_t bytes, max_bytes;
	uint64_t last_flush_ns;
	struct eng_cap_conn *conns; /* live captured connections */
	uint8_t pkt[16 + CAP_HDR_MAX + CAP_MAX_SEG];
} cap = {.lock = PTHREAD_MUTEX_INITIALIZER, .once = PTHREAD_ONCE_INIT};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- set-up, fork and exit ------------------------------------------------------------------- */

static void cap_atfork_prepare(void)
{
	pthread_mutex_lock(&cap.lock);
	if (cap.f)
		fflush(cap.f);
}

static void cap_atfork_parent(void)
{
	pthread_mutex_unlock(&cap.lock);
}

static void cap_atfork_child(void)
{
	/* The parent's file and connections are not the child's; it opens its own (%p). */
	if (cap.f)
		fclose(cap.f);
	cap.f = NULL;
	cap.conns = NULL;
	cap.bytes = 0;
	pthread_mutex_unlock(&cap.lock);
}

static void cap_init_once(void)
{
	const char *p = getenv("SIW_CAPTURE");
	const char *max = getenv("SIW_CAPTURE_MAX_MB");

	if (!p || !*p)
		return;
	if (strlen(p) >= sizeof(cap.tmpl)) {
		eng_err("SIW_CAPTURE: path too long; capture is off");
		return;
	}
	strcpy(cap.tmpl, p);
	if (max && atoll(max) > 0)
		cap.max_bytes = (uint64_t)atoll(max) << 20;
	pthread_atfork(cap_atfork_prepare, cap_atfork_parent, cap_atfork_child);
	eng_cap_on = true;
}

void eng_cap_init(void)
{
	pthread_once(&cap.once, cap_init_once);
}

__attribute__((destructor)) static void cap_fini(void)
{
	if (!eng_cap_on)
		return;
	pthread_mutex_lock(&cap.lock);
	if (cap.f && cap.pid == getpid())
		fflush(cap.f);
	pthread_mutex_unlock(&cap.lock);
}

const char *eng_cap_path(char *buf, size_t sz)
{
	const char *r = NULL;

	if (!eng_cap_on)
		return NULL;
	pthread_mutex_lock(&cap.lock);
	if (cap.path[0] && cap.pid == getpid() && cap.f) {
		snprintf(buf, sz, "%s", cap.path);
		r = buf;
	}
	pthread_mutex_unlock(&cap.lock);
	return r;
}

/* The template with %p = pid, %% = %. False if too long. */
static bool expand(const char *t, pid_t pid, char *out, size_t sz)
{
	size_t o = 0;

	for (; *t; t++) {
		char num[24];
		const char *s = num;

		if (t[0] == '%' && t[1] == 'p') {
			snprintf(num, sizeof(num), "%ld", (long)pid);
			t++;
		} else if (t[0] == '%' && t[1] == '%') {
			num[0] = '%';
			num[1] = '\0';
			t++;
		} else {
			num[0] = *t;
			num[1] = '\0';
		}
		while (*s) {
			if (o + 1 >= sz)
				return false;
			out[o++] = *s++;
		}
	}
	out[o] = '\0';
	return true;
}

static bool cap_write(const void *p, size_t len)
{
	if (fwrite(p, 1, len, cap.f) != len) {
		eng_err("SIW_CAPTURE: writing %s: %s; capture stops here", cap.path,
			strerror(errno));
		cap.stopped = true;
		return false;
	}
	cap.bytes += len;
	return true;
}

static void cap_flush(void)
{
	if (cap.f && fflush(cap.f) != 0 && !cap.stopped) {
		eng_err("SIW_CAPTURE: writing %s: %s; capture stops here", cap.path,
			strerror(errno));
		cap.stopped = true;
	}
	cap.last_flush_ns = now_ns();
}

/*
 * The file of this process is open and may be written (capture lock held). Opens it on the
 * first call in a process; a forked child gets its own file only if the name has %p.
 */
static bool cap_ready(void)
{
	pid_t pid = getpid();
	bool forked = cap.pid != 0;
	int fd;

	if (cap.pid == pid)
		return cap.f && !cap.stopped;
	cap.pid = pid;
	cap.stopped = false;
	cap.bytes = 0;
	if (forked && !strstr(cap.tmpl, "%p")) {
		eng_warn("SIW_CAPTURE: no capture in the forked process %ld (put %%p in the file "
			 "name to get one file per process)",
			 (long)pid);
		return false;
	}
	if (!expand(cap.tmpl, pid, cap.path, sizeof(cap.path))) {
		eng_err("SIW_CAPTURE: path too long; capture is off");
		return false;
	}
	fd = open(cap.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || !(cap.f = fdopen(fd, "wb"))) {
		eng_err("SIW_CAPTURE: cannot create %s: %s; capture is off", cap.path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return false;
	}
	setvbuf(cap.f, NULL, _IOFBF, 1 << 20);
	{
		/* pcap global header: microsecond timestamps, Ethernet. */
		uint32_t h[6] = {0xa1b2c3d4, 2 | (4u << 16), 0, 0, CAP_SNAPLEN, 1};

		if (!cap_write(h, sizeof(h)))
			return false;
	}
	cap_flush();
	eng_info("SIW_CAPTURE: writing the iWARP traffic of process %ld to %s", (long)pid,
		 cap.path);
	return !cap.stopped;
}

/* ---- packets --------------------------------------------------------------------------------- */

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/*
 * The Internet checksum (RFC 1071) of p[0..len), added to sum (big-endian 16-bit words). The
 * bytes are summed 8 at a time in host order and swapped once at the end (§2(B)).
 */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	uint64_t s = 0;
	uint16_t h;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		s += (v & 0xFFFFFFFF) + (v >> 32);
	}
	for (; len >= 2; p += 2, len -= 2) {
		uint16_t v;

		memcpy(&v, p, 2);
		s += v;
	}
	if (len) {
		uint8_t last[2] = {p[0], 0};
		uint16_t v;

		memcpy(&v, last, 2);
		s += v;
	}
	while (s >> 16)
		s = (s & 0xFFFF) + (s >> 16);
	h = (uint16_t)s;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	h = (uint16_t)(h >> 8 | h << 8);
#endif
	return sum + h;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xFFFF) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Copies len bytes from iov[0..n) starting at byte off. */
static void gather(uint8_t *dst, const struct iovec *iov, int n, size_t off, size_t len)
{
	for (int i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		memcpy(dst, (const uint8_t *)iov[i].iov_base + off, l);
		dst += l;
		len -= l;
		off = 0;
	}
}

static void mac_of(uint8_t *mac, const struct eng_cap_conn *c, int side)
{
	const uint8_t *ip = c->ip[side] + (c->v6 ? 12 : 0);

	mac[0] = 0x02; /* locally administered */
	mac[1] = (uint8_t)(side ? 0x02 : 0x01);
	memcpy(mac + 2, ip, 4);
}

/*
 * One segment from side `from` (0 local, 1 peer): flags, optional TCP options, and len payload
 * bytes taken from iov at off. Advances that side's sequence number (capture lock held).
 */
static void put_seg(struct eng_cap_conn *c, int from, uint8_t flags, const uint8_t *opt,
		    size_t optlen, const struct iovec *iov, int niov, size_t off, size_t len)
{
	uint8_t *rec = cap.pkt, *eth = rec + 16, *ip = eth + 14, *tcp;
	size_t iplen = c->v6 ? 40 : 20, thl = 20 + optlen, frame;
	uint32_t seq = c->seq[from], ack = c->seq[!from], sum;
	uint64_t ns = now_ns();

	if (cap.stopped || !cap.f)
		return;
	tcp = ip + iplen;
	frame = 14 + iplen + thl + len;
	/* record header (host order, as the global header's magic says) */
	{
		uint32_t h[4] = {(uint32_t)(ns / 1000000000ull),
				 (uint32_t)(ns % 1000000000ull / 1000), (uint32_t)frame,
				 (uint32_t)frame};

		memcpy(rec, h, sizeof(h));
	}
	mac_of(eth, c, !from);
	mac_of(eth + 6, c, from);
	put16(eth + 12, c->v6 ? 0x86DD : 0x0800);
	if (c->v6) {
		put32(ip, 6u << 28);
		put16(ip + 4, (uint16_t)(thl + len));
		ip[6] = 6;  /* TCP */
		ip[7] = 64; /* hop limit */
		memcpy(ip + 8, c->ip[from], 16);
		memcpy(ip + 24, c->ip[!from], 16);
	} else {
		memset(ip, 0, 20);
		ip[0] = 0x45;
		put16(ip + 2, (uint16_t)(20 + thl + len));
		put16(ip + 6, 0x4000); /* DF */
		ip[8] = 64;
		ip[9] = 6;
		memcpy(ip + 12, c->ip[from], 4);
		memcpy(ip + 16, c->ip[!from], 4);
		put16(ip + 10, csum_fold(csum_add(0, ip, 20)));
	}
	put16(tcp, c->port[from]);
	put16(tcp + 2, c->port[!from]);
	put32(tcp + 4, seq);
	put32(tcp + 8, (flags & TH_ACK) ? ack : 0);
	tcp[12] = (uint8_t)((thl / 4) << 4);
	tcp[13] = flags;
	put16(tcp + 14, 0xFFFF);
	put32(tcp + 16, 0); /* checksum, urgent pointer */
	if (optlen)
		memcpy(tcp + 20, opt, optlen);
	if (len)
		gather(tcp + thl, iov, niov, off, len);
	/* pseudo header + segment */
	if (c->v6) {
		sum = csum_add(0, ip + 8, 32);
		sum += (uint32_t)(thl + len) + 6;
	} else {
		sum = csum_add(0, ip + 12, 8);
		sum += 6 + (uint32_t)(thl + len);
	}
	put16(tcp + 16, csum_fold(csum_add(sum, tcp, thl + len)));

	if (cap.max_bytes && cap.bytes + 16 + frame > cap.max_bytes) {
		eng_warn("SIW_CAPTURE: %s reached SIW_CAPTURE_MAX_MB; capture stops here",
			 cap.path);
		cap.stopped = true;
		cap_flush();
		return;
	}
	if (!cap_write(rec, 16 + frame))
		return;
	if (flags & TH_ACK)
		c->ack[from] = ack;
	c->seq[from] = seq + (uint32_t)len + ((flags & (TH_SYN | TH_FIN)) ? 1 : 0);
	if (ns - cap.last_flush_ns > CAP_FLUSH_NS)
		cap_flush();
}

/* Payload from one side, cut into segments, with pure ACKs from the other side as needed. */
static void put_data(struct eng_cap_conn *c, int from, const struct iovec *iov, int niov,
		     size_t off, size_t len)
{
	len += off;
	while (off < len && !cap.stopped) {
		size_t l = len - off > CAP_MAX_SEG ? CAP_MAX_SEG : len - off;

		if (c->seq[from] + (uint32_t)l - c->ack[!from] > CAP_ACK_EVERY)
			put_seg(c, !from, TH_ACK, NULL, 0, NULL, 0, 0, 0);
		put_seg(c, from, TH_ACK | TH_PSH, NULL, 0, iov, niov, off, l);
		off += l;
	}
}

static void put_bytes(struct eng_cap_conn *c, int from, const void *p, size_t len)
{
	struct iovec v = {.iov_base = (void *)(uintptr_t)p, .iov_len = len};

	if (len)
		put_data(c, from, &v, 1, 0, len);
}

/* ---- FPDU framing --------------------------------------------------------------------------- */

/*
 * Wireshark's MPA dissector counts markers per TCP segment, so it decodes a marker stream only
 * when each segment holds exactly one FPDU. Every direction is therefore cut at FPDU ends: an
 * FPDU that spans system calls is held until it is complete. Without markers this also makes
 * the file look like a capture on a NIC (tshark would reassemble other cuts as well).
 */

/* Stream length of the FPDU starting at stream position start (4-aligned) with this ULPDU. */
static uint32_t fpdu_len(uint64_t start, unsigned ulpdu, bool markers)
{
	uint64_t pos = start, left = 2 + ulpdu + (4 - (2 + ulpdu) % 4) % 4 + MPA_CRC_LEN;

	if (!markers)
		return (uint32_t)left;
	/* A marker due at the FPDU's start is its first 4 bytes; one due at its end is not. */
	while (left) {
		uint64_t k;

		if (pos % MPA_MARKER_PERIOD == 0)
			pos += MPA_MARKER_LEN;
		k = MPA_MARKER_PERIOD - pos % MPA_MARKER_PERIOD;
		if (k > left)
			k = left;
		pos += k;
		left -= k;
	}
	return (uint32_t)(pos - start);
}

static bool hold(struct eng_cap_dir *d, const struct iovec *iov, int niov, size_t off, size_t len)
{
	if (d->nheld + len > d->cap) {
		size_t c = d->cap < 4096 ? 4096 : 2 * d->cap;
		uint8_t *p;

		if (c < d->nheld + len)
			c = d->nheld + len;
		p = realloc(d->held, c);

		if (!p) {
			eng_err("SIW_CAPTURE: out of memory; capture stops here");
			cap.stopped = true;
			return false;
		}
		d->held = p;
		d->cap = c;
	}
	gather(d->held + d->nheld, iov, niov, off, len);
	d->nheld += len;
	return true;
}

/* Stream bytes from one side, written one FPDU per segment (capture lock held). */
static void feed(struct eng_cap_conn *c, int from, const struct iovec *iov, int niov, size_t len)
{
	struct eng_cap_dir *d = &c->dir[from];
	size_t off = 0;

	if (!d->framed) {
		put_data(c, from, iov, niov, 0, len);
		return;
	}
	while (off < len && !cap.stopped) {
		size_t avail = len - off, need;

		if (!d->len_known) {
			/* An optional marker, then the 2-byte ULPDU length. */
			size_t hl = (d->markers && d->start % MPA_MARKER_PERIOD == 0 ? 4 : 0) + 2;
			uint8_t h[6];

			if (d->nheld + avail < hl) {
				hold(d, iov, niov, off, avail);
				return;
			}
			if (d->nheld)
				memcpy(h, d->held, d->nheld);
			gather(h + d->nheld, iov, niov, off, hl - d->nheld);
			d->flen =
			    fpdu_len(d->start, (unsigned)h[hl - 2] << 8 | h[hl - 1], d->markers);
			d->len_known = true;
		}
		need = d->flen - d->nheld;
		if (!d->nheld && avail >= need) {
			put_data(c, from, iov, niov, off, need); /* the common case: no copy */
			off += need;
		} else {
			size_t take = avail < need ? avail : need;

			if (!hold(d, iov, niov, off, take))
				return;
			off += take;
			if (d->nheld < d->flen)
				return;
			put_bytes(c, from, d->held, d->flen);
			d->nheld = 0;
		}
		d->start += d->flen;
		d->len_known = false;
	}
}

/* Whatever is held goes out as it is (the connection ends). */
static void feed_flush(struct eng_cap_conn *c, int from)
{
	struct eng_cap_dir *d = &c->dir[from];

	if (d->nheld)
		put_bytes(c, from, d->held, d->nheld);
	d->start += d->nheld;
	d->nheld = 0;
	d->len_known = false;
}

static void dir_free(struct eng_cap_conn *c)
{
	for (int i = 0; i < 2; i++) {
		free(c->dir[i].held);
		memset(&c->dir[i], 0, sizeof(c->dir[i]));
	}
}

/* Initial sequence numbers: a hash of the direction's addresses, the same in both ends' files. */
static uint32_t isn_of(const struct eng_cap_conn *c, int from)
{
	uint32_t h = 2166136261u;
	uint8_t b[36];

	memcpy(b, c->ip[from], 16);
	memcpy(b + 16, c->ip[!from], 16);
	put16(b + 32, c->port[from]);
	put16(b + 34, c->port[!from]);
	for (size_t i = 0; i < sizeof(b); i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static void set_addr(struct eng_cap_conn *c, int side, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		c->port[side] = ntohs(s6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(c->ip[side], s6->sin6_addr.s6_addr + 12, 4);
		} else {
			memcpy(c->ip[side], s6->sin6_addr.s6_addr, 16);
			c->v6 = true;
		}
	} else if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		c->port[side] = ntohs(s4->sin_port);
		memcpy(c->ip[side], &s4->sin_addr, 4);
	}
}

static void conn_addrs(struct eng_cap_conn *c, const struct sockaddr_storage *local,
		       const struct sockaddr_storage *peer)
{
	memset(c->ip, 0, sizeof(c->ip));
	c->v6 = false;
	set_addr(c, 0, local);
	set_addr(c, 1, peer);
	if (c->v6 && local->ss_family != peer->ss_family) {
		/* One side IPv4-mapped, the other not: keep both as IPv6. */
		for (int s = 0; s < 2; s++) {
			const struct sockaddr_storage *ss = s ? peer : local;

			if (ss->ss_family == AF_INET) {
				uint8_t v4[4];

				memcpy(v4, c->ip[s], 4);
				memset(c->ip[s], 0, 16);
				c->ip[s][10] = c->ip[s][11] = 0xFF;
				memcpy(c->ip[s] + 12, v4, 4);
			}
		}
	}
}

/* Handshake, MPA request (from the initiator), MPA reply. ini: the initiator's side. */
static void put_start(struct eng_cap_conn *c, int ini, const void *req, size_t req_len,
		      const void *rep, size_t rep_len)
{
	/* MSS 65495, NOP, window scale 14 */
	static const uint8_t syn_opt[8] = {2, 4, 0xFF, 0xD7, 1, 3, 3, 14};

	c->seq[0] = isn_of(c, 0);
	c->seq[1] = isn_of(c, 1);
	c->ack[0] = c->ack[1] = 0;
	c->fin[0] = c->fin[1] = false;
	put_seg(c, ini, TH_SYN, syn_opt, sizeof(syn_opt), NULL, 0, 0, 0);
	put_seg(c, !ini, TH_SYN | TH_ACK, syn_opt, sizeof(syn_opt), NULL, 0, 0, 0);
	put_seg(c, ini, TH_ACK, NULL, 0, NULL, 0, 0, 0);
	put_bytes(c, ini, req, req_len);
	put_bytes(c, !ini, rep, rep_len);
}

static void put_fin(struct eng_cap_conn *c, int from)
{
	if (c->fin[from])
		return;
	feed_flush(c, from);
	put_seg(c, from, TH_FIN | TH_ACK, NULL, 0, NULL, 0, 0, 0);
	c->fin[from] = true;
}

static bool is_mirror(const struct eng_cap_conn *a, const struct eng_cap_conn *b)
{
	return a->v6 == b->v6 && a->port[0] == b->port[1] && a->port[1] == b->port[0] &&
	       !memcmp(a->ip[0], b->ip[1], 16) && !memcmp(a->ip[1], b->ip[0], 16);
}

static void conn_unlink(struct eng_cap_conn *c)
{
	for (struct eng_cap_conn **pp = &cap.conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->next = NULL;
	c->live = false;
	dir_free(c);
}

/* ---- hooks ----------------------------------------------------------------------------------- */

/* MPA frames rebuilt from the negotiated parameters (callers that do not pass the real ones). */
static void synth_frames(const struct eng_conn *conn, uint8_t *req, int *req_len, uint8_t *rep,
			 int *rep_len)
{
	struct siw_mpa_result ini = conn->mpa, res = conn->mpa;
	const struct siw_mpa_result *mine = &conn->mpa;
	struct siw_mpa_cfg cfg = {0};

	/* Each side's view: markers_rx/tx and IRD/ORD are mirrored at the other end. */
	if (conn->initiator) {
		res.markers_rx = mine->markers_tx;
		res.markers_tx = mine->markers_rx;
		res.ird = mine->ord;
		res.ord = mine->ird;
	} else {
		ini.markers_rx = mine->markers_tx;
		ini.markers_tx = mine->markers_rx;
		ini.ird = mine->ord;
		ini.ord = mine->ird;
	}
	cfg.rev = ini.rev;
	cfg.crc = ini.crc ? SIW_CRC_REQUEST : SIW_CRC_OFF;
	cfg.markers = ini.markers_rx;
	cfg.gso = ini.gso;
	cfg.p2p = ini.p2p && ini.rtr != SIW_RTR_NONE;
	cfg.rtr_types = cfg.p2p ? (uint16_t)(1u << ini.rtr) : 0;
	if (!cfg.p2p)
		res.p2p = false;
	*req_len = siw_mpa_build_req(&cfg, ini.ird, ini.ord, NULL, 0, req,
				     MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA);
	*rep_len =
	    siw_mpa_build_reply(&cfg, &res, false, NULL, 0, rep, MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA);
}

void eng_cap_connect(struct eng_qp *qp, const struct eng_conn *conn)
{
	struct eng_cap_conn *c = &qp->obs.cap;
	uint8_t sreq[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA], srep[MPA_RR_HDR_LEN + MPA_MAX_PRIVDATA];
	const void *req, *rep;
	size_t req_len, rep_len;

	pthread_mutex_lock(&cap.lock);
	if (c->live)
		conn_unlink(c);
	if (!cap_ready())
		goto out;
	conn_addrs(c, &qp->local, &qp->peer);
	for (struct eng_cap_conn *o = cap.conns; o; o = o->next)
		if (is_mirror(c, o))
			goto out; /* the other end, in this process, writes the connection */
	if (conn->mpa_sent_len && conn->mpa_rcvd_len) {
		req = conn->initiator ? conn->mpa_sent : conn->mpa_rcvd;
		req_len = conn->initiator ? conn->mpa_sent_len : conn->mpa_rcvd_len;
		rep = conn->initiator ? conn->mpa_rcvd : conn->mpa_sent;
		rep_len = conn->initiator ? conn->mpa_rcvd_len : conn->mpa_sent_len;
	} else {
		int a, b;

		synth_frames(conn, sreq, &a, srep, &b);
		req = sreq;
		rep = srep;
		req_len = a > 0 ? (size_t)a : 0;
		rep_len = b > 0 ? (size_t)b : 0;
	}
	c->live = true;
	c->next = cap.conns;
	cap.conns = c;
	put_start(c, conn->initiator ? 0 : 1, req, req_len, rep, rep_len);
	c->dir[0].markers = conn->mpa.markers_tx;
	c->dir[1].markers = conn->mpa.markers_rx;
	c->dir[0].framed = c->dir[1].framed = true;
	cap_flush();
out:
	pthread_mutex_unlock(&cap.lock);
}

void eng_cap_tx(struct eng_qp *qp, const struct iovec *iov, unsigned n, size_t bytes)
{
	struct eng_cap_conn *c = &qp->obs.cap;

	pthread_mutex_lock(&cap.lock);
	if (c->live && bytes)
		feed(c, 0, iov, (int)n, bytes);
	pthread_mutex_unlock(&cap.lock);
}

void eng_cap_rx(struct eng_qp *qp, const struct iovec *iov, int n, const void *stage, ssize_t bytes)
{
	struct eng_cap_conn *c = &qp->obs.cap;

	if (bytes < 0)
		return;
	pthread_mutex_lock(&cap.lock);
	if (c->live) {
		if (bytes == 0)
			put_fin(c, 1);
		else if (iov)
			feed(c, 1, iov, n, (size_t)bytes);
		else
			feed(c, 1, &(struct iovec){(void *)(uintptr_t)stage, (size_t)bytes}, 1,
			     (size_t)bytes);
	}
	pthread_mutex_unlock(&cap.lock);
}

void eng_cap_close(struct eng_qp *qp)
{
	struct eng_cap_conn *c = &qp->obs.cap;

	pthread_mutex_lock(&cap.lock);
	if (c->live) {
		feed_flush(c, 1);
		put_fin(c, 0);
		conn_unlink(c);
		cap_flush();
	}
	pthread_mutex_unlock(&cap.lock);
}

static bool starts_with(const void *p, size_t len, const char *key)
{
	return p && len >= MPA_KEY_LEN && !memcmp(p, key, MPA_KEY_LEN);
}

void eng_capture_mpa(int fd, const struct sockaddr *peer, const void *sent, size_t sent_len,
		     const void *rcvd, size_t rcvd_len)
{
	struct sockaddr_storage l = {0}, p = {0};
	struct eng_cap_conn c = {0};
	socklen_t len;
	int ini;

	eng_cap_init();
	if (!eng_cap_on || fd < 0)
		return;
	if (starts_with(sent, sent_len, MPA_KEY_REQ))
		ini = 0;
	else if (starts_with(rcvd, rcvd_len, MPA_KEY_REQ))
		ini = 1;
	else
		return; /* no MPA request went either way: nothing iWARP to show */
	len = sizeof(l);
	if (getsockname(fd, (struct sockaddr *)&l, &len) < 0)
		return;
	len = sizeof(p);
	if (getpeername(fd, (struct sockaddr *)&p, &len) < 0) {
		if (!peer)
			return;
		memcpy(&p, peer,
		       peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in));
	}
	conn_addrs(&c, &l, &p);
	pthread_mutex_lock(&cap.lock);
	if (cap_ready()) {
		put_start(&c, ini, ini ? rcvd : sent, ini ? rcvd_len : sent_len, ini ? sent : rcvd,
			  ini ? sent_len : rcvd_len);
		put_fin(&c, 0);
		cap_flush();
	}
	pthread_mutex_unlock(&cap.lock);
}
