// SPDX-License-Identifier: MIT
/*
 * fi-rma-bench: libfabric's peer of siw-bench. RMA WRITE, RMA READ and SEND/RECV bandwidth
 * with a deep queue, and ping-pong latency (median, p99), over libfabric's `tcp` provider
 * (FI_EP_MSG: a connected endpoint, what the provider offers RMA on in libfabric 1.17; the
 * closest thing to an iWARP RC QP), with the message sizes of siw-bench. Debian ships
 * libfabric-dev but no fabtests.
 *
 *   fi-rma-bench [options]            client and a forked server on 127.0.0.1
 *   fi-rma-bench -S [options]         server only (listens on --addr, control port --port)
 *   fi-rma-bench [options] HOST       client only, to a server started with -S
 *
 * A plain TCP control connection carries keys, row setup and the server's verdicts; the fabric
 * endpoint carries the data only. Rows, as in siw-bench:
 *   write/read/send bw: --depth operations in flight on one endpoint, spread over the slots of
 *     a registered arena (at most --depth slots of `size` bytes); the WRITE and SEND rows end
 *     with an 8-byte fi_read (ordered after them on the stream: FI_ORDER_RAW/RAS) inside the
 *     timed interval, as siw-bench ends its rows with a READ;
 *   write lat: ping-pong, each side polls the last byte of its slot (as ib_write_lat);
 *   send lat: fi_send/fi_recv ping-pong; read lat: fi_read round trip.
 * Data are verified in every row: the server checks the WRITE targets and SEND sinks, the client
 * the READ sinks and every pong. Latency: write/send half the round trip, read the whole trip.
 * GB/s = 1e9 B/s. Exit 0 when every row was measured and verified, 1 otherwise, 2 on usage.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define FRB_MAX_SIZES 64
#define FRB_ARENA     (64u << 20) /* registered bytes per process */
#define FRB_MAX_SIZE  (FRB_ARENA / 4)
#define FRB_SCRATCH   (FRB_ARENA - 64) /* the fence READs land here */
#define FRB_LAT_CAP   1000000
#define FRB_WARMUP    16
#define FRB_FINAL     0xff
#define FRB_MAGIC     0x66726231u

enum { OP_WRITE, OP_READ, OP_SEND, OP_N };
enum { MODE_BW, MODE_LAT };
enum { CMD_ROW = 1, CMD_END, CMD_QUIT };

static const char *const op_name[OP_N] = {"write", "read", "send"};

static struct {
	size_t sizes[FRB_MAX_SIZES];
	int nsizes;
	int ops[OP_N];
	int nops;
	bool bw, lat;
	int depth;
	double time;
	int timeout;
	int port;
	const char *addr; /* server address */
	bool server_only, client_only, quiet;
	const char *csv;
} o = {.bw = true, .lat = true, .depth = 64, .time = 0.5, .timeout = 30, .addr = "127.0.0.1"};

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *who = "fi-rma-bench";

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", who);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

#define FI_CHECK(call)                                                                         \
	do {                                                                                   \
		int rc_ = (int)(call);                                                         \
		if (rc_)                                                                       \
			die("%s: %s (%d)", #call, fi_strerror(-rc_), rc_);                     \
	} while (0)

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Byte k of slot j in row `seed`. */
static void pattern_fill(uint8_t *p, size_t len, uint32_t seed, uint32_t slot)
{
	uint64_t base = mix64(((uint64_t)seed << 32) | slot);
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w = mix64(base + i);

		memcpy(p + i, &w, 8);
	}
	if (i < len) {
		uint64_t w = mix64(base + i);

		memcpy(p + i, &w, len - i);
	}
}

/* 0 when p[0, len) holds the pattern; bytes at and after `skip_from` are not compared. */
static int pattern_check(const uint8_t *p, size_t len, uint32_t seed, uint32_t slot, size_t skip_from)
{
	uint64_t base = mix64(((uint64_t)seed << 32) | slot);
	size_t end = len < skip_from ? len : skip_from;

	for (size_t i = 0; i < end; i += 8) {
		uint64_t w = mix64(base + i);
		size_t n = end - i < 8 ? end - i : 8;

		if (memcmp(p + i, &w, n))
			return -1;
	}
	return 0;
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	default: break;
	}
	if (*end || v == 0 || v > FRB_MAX_SIZE) {
		fprintf(stderr, "%s: bad size '%s' (1 .. %u)\n", who, s, FRB_MAX_SIZE);
		exit(2);
	}
	return (size_t)v;
}

/* ---- control connection ------------------------------------------------------------------- */

struct hello {
	uint32_t magic;
	uint32_t fabric_port; /* server: its passive endpoint's port */
	uint64_t addr;        /* remote address of the arena (0 without FI_MR_VIRT_ADDR) */
	uint64_t key;
};

struct cmd {
	uint32_t type, op, mode, seed;
	uint64_t size;
	uint64_t count; /* CMD_END: operations completed */
};

struct rep {
	int32_t status;
	uint32_t pad;
	uint64_t value;
};

static void xfer(int fd, void *buf, size_t len, bool out)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("control connection: %s", n ? strerror(errno) : "closed by the peer");
		p += n;
		len -= (size_t)n;
	}
}

static int ctrl_listen(const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		die("control socket for %s: %s", addr, strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 1))
		die("bind/listen %s:%d: %s", addr, port, strerror(errno));
	return fd;
}

static int ctrl_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;

	getsockname(fd, (struct sockaddr *)&sa, &len);
	return ntohs(sa.sin_port);
}

static void ctrl_opts(int fd)
{
	int one = 1;
	struct timeval tv = {.tv_sec = o.timeout + (int)o.time + 5};

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int ctrl_connect(const char *addr, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		die("bad address %s", addr);
	for (int i = 0; i < 100; i++) { /* a server started just before: up to 10 s */
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (fd < 0)
			die("socket: %s", strerror(errno));
		if (!connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
			ctrl_opts(fd);
			return fd;
		}
		close(fd);
		usleep(100000);
	}
	die("connect %s:%d: %s", addr, port, strerror(errno));
}

/* ---- fabric ------------------------------------------------------------------------------- */

static struct {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_eq *eq;
	struct fid_pep *pep;
	struct fid_ep *ep;
	struct fid_cq *cq;
	struct fid_mr *mr;
	uint8_t *arena;
	void *desc;
	uint64_t key, local_addr;    /* what the peer needs */
	uint64_t raddr, rkey;        /* the peer's arena */
	uint64_t tx_posted, tx_done; /* fi_write/fi_read/fi_send */
	uint64_t rx_done;            /* fi_recv completions */
	uint64_t rx_slot_next;       /* slot of the next fi_recv completion */
	size_t tx_size, rx_size;
} f;

static struct fi_info *hints(void)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		die("fi_allocinfo");
	h->ep_attr->type = FI_EP_MSG;
	h->caps = FI_MSG | FI_RMA;
	h->mode = 0;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->tx_attr->msg_order = FI_ORDER_RAW | FI_ORDER_RAS;
	h->fabric_attr->prov_name = strdup("tcp");
	return h;
}

static void eq_expect(uint32_t want, struct fi_eq_cm_entry *entry)
{
	uint32_t event;
	ssize_t n = fi_eq_sread(f.eq, &event, entry, sizeof *entry, (o.timeout + 10) * 1000, 0);

	if (n == -FI_EAVAIL) {
		struct fi_eq_err_entry e = {0};

		fi_eq_readerr(f.eq, &e, 0);
		die("connection: %s (%s)", fi_strerror(e.err),
		    fi_eq_strerror(f.eq, e.prov_errno, e.err_data, NULL, 0));
	}
	if (n < 0)
		die("fi_eq_sread: %s", fi_strerror((int)-n));
	if (event != want)
		die("connection: event %u, expected %u", event, want);
}

static void open_common(struct fi_info *info)
{
	struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_MSG, .wait_obj = FI_WAIT_NONE,
				     .size = 4096};
	uint64_t mrm = info->domain_attr->mr_mode;

	FI_CHECK(fi_domain(f.fabric, info, &f.domain, NULL));
	FI_CHECK(fi_endpoint(f.domain, info, &f.ep, NULL));
	FI_CHECK(fi_cq_open(f.domain, &cq_attr, &f.cq, NULL));
	FI_CHECK(fi_ep_bind(f.ep, &f.eq->fid, 0));
	FI_CHECK(fi_ep_bind(f.ep, &f.cq->fid, FI_TRANSMIT | FI_RECV));
	f.tx_size = info->tx_attr->size;
	f.rx_size = info->rx_attr->size;
	/* Both sides use the same slot count: the depth both queues allow. */
	if ((size_t)o.depth > f.tx_size)
		o.depth = (int)f.tx_size;
	if ((size_t)o.depth > f.rx_size)
		o.depth = (int)f.rx_size;

	f.arena = mmap(NULL, FRB_ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f.arena == MAP_FAILED)
		die("mmap %u bytes: %s", FRB_ARENA, strerror(errno));
	memset(f.arena, 0, FRB_ARENA);
	FI_CHECK(fi_mr_reg(f.domain, f.arena, FRB_ARENA,
			   FI_READ | FI_WRITE | FI_SEND | FI_RECV | FI_REMOTE_READ | FI_REMOTE_WRITE,
			   0, 0x5157, 0, &f.mr, NULL));
	if (mrm & FI_MR_ENDPOINT) {
		FI_CHECK(fi_mr_bind(f.mr, &f.ep->fid, 0));
		FI_CHECK(fi_mr_enable(f.mr));
	}
	f.desc = fi_mr_desc(f.mr);
	f.key = fi_mr_key(f.mr);
	f.local_addr = (mrm & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)f.arena : 0;
	FI_CHECK(fi_enable(f.ep));
}

static int server_fabric_listen(void)
{
	struct fi_info *h = hints(), *info;
	struct fi_eq_attr eq_attr = {.wait_obj = FI_WAIT_UNSPEC};
	struct sockaddr_in sa;
	size_t len = sizeof sa;

	FI_CHECK(fi_getinfo(FI_VERSION(1, 17), o.addr, "0", FI_SOURCE, h, &info));
	fi_freeinfo(h);
	FI_CHECK(fi_fabric(info->fabric_attr, &f.fabric, NULL));
	FI_CHECK(fi_eq_open(f.fabric, &eq_attr, &f.eq, NULL));
	FI_CHECK(fi_passive_ep(f.fabric, info, &f.pep, NULL));
	FI_CHECK(fi_pep_bind(f.pep, &f.eq->fid, 0));
	FI_CHECK(fi_listen(f.pep));
	FI_CHECK(fi_getname(&f.pep->fid, &sa, &len));
	fi_freeinfo(info);
	return ntohs(sa.sin_port);
}

static void server_fabric_accept(void)
{
	struct fi_eq_cm_entry entry;

	eq_expect(FI_CONNREQ, &entry);
	f.info = entry.info;
	open_common(f.info);
	FI_CHECK(fi_accept(f.ep, NULL, 0));
	eq_expect(FI_CONNECTED, &entry);
}

static void client_fabric_connect(int port)
{
	struct fi_info *h = hints();
	struct fi_eq_attr eq_attr = {.wait_obj = FI_WAIT_UNSPEC};
	struct fi_eq_cm_entry entry;
	char service[16];

	snprintf(service, sizeof service, "%d", port);
	FI_CHECK(fi_getinfo(FI_VERSION(1, 17), o.addr, service, 0, h, &f.info));
	fi_freeinfo(h);
	FI_CHECK(fi_fabric(f.info->fabric_attr, &f.fabric, NULL));
	FI_CHECK(fi_eq_open(f.fabric, &eq_attr, &f.eq, NULL));
	open_common(f.info);
	FI_CHECK(fi_connect(f.ep, f.info->dest_addr, NULL, 0));
	eq_expect(FI_CONNECTED, &entry);
}

static void fabric_close(void)
{
	fi_shutdown(f.ep, 0);
	fi_close(&f.ep->fid);
	fi_close(&f.mr->fid);
	fi_close(&f.cq->fid);
	if (f.pep)
		fi_close(&f.pep->fid);
	fi_close(&f.eq->fid);
	fi_close(&f.domain->fid);
	fi_close(&f.fabric->fid);
	fi_freeinfo(f.info);
}

/* Context values: transmit operations carry 0, receives 1 + slot. */
#define CTX_TX   ((void *)(uintptr_t)0)
#define CTX_RX(s) ((void *)(uintptr_t)(1 + (s)))
/* Receives posted in a SEND ping-pong (slot 0). Two into the same buffer delivered a stale tag
 * with libfabric 1.17's tcp provider; one is what a ping-pong needs. */
#define LAT_RX 1

/* Reads completions; returns how many receives completed (their slots in order: rx_slot_next). */
static int poll_cq(void)
{
	struct fi_cq_msg_entry e[32];
	ssize_t n = fi_cq_read(f.cq, e, 32);
	int rx = 0;

	if (n == -FI_EAGAIN)
		return 0;
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry err = {0};

		fi_cq_readerr(f.cq, &err, 0);
		die("completion error: %s (%s)", fi_strerror(err.err),
		    fi_cq_strerror(f.cq, err.prov_errno, err.err_data, NULL, 0));
	}
	if (n < 0)
		die("fi_cq_read: %s", fi_strerror((int)-n));
	for (ssize_t i = 0; i < n; i++) {
		if (e[i].op_context == CTX_TX)
			f.tx_done++;
		else
			rx++;
	}
	f.rx_done += (uint64_t)rx;
	return rx;
}

static int64_t deadline;
static void cancel_rx(size_t n);

static void check_deadline(void)
{
	if (now_ns() > deadline)
		die("timeout: no progress for %d s", o.timeout);
}

/*
 * One turn of a busy wait: drive the endpoint (manual progress), and every 16th turn check the
 * deadline and let other threads run (2-core machines).
 */
static void spin_step(unsigned *spin)
{
	poll_cq();
	if (!(++*spin & 15)) {
		check_deadline();
		sched_yield();
	}
}

/* Posts a receive, retrying while the queue is full. */
#define POST_RX(call)                                                                          \
	do {                                                                                   \
		ssize_t rc_;                                                                   \
		unsigned spin_ = 0;                                                            \
		while ((rc_ = (call)) == -FI_EAGAIN)                                           \
			spin_step(&spin_);                                                     \
		if (rc_)                                                                       \
			die("%s: %s", #call, fi_strerror((int)-rc_));                          \
	} while (0)

/* The same for a transmit, counted. */
#define POST(call)                                                                             \
	do {                                                                                   \
		POST_RX(call);                                                                 \
		f.tx_posted++;                                                                 \
	} while (0)

static void wait_tx(uint64_t upto)
{
	unsigned spin = 0;

	while (f.tx_done < upto)
		spin_step(&spin);
}

/* Waits for the last byte of p to become `tag`, progressing the endpoint. */
static void wait_byte(volatile uint8_t *p, uint8_t tag)
{
	unsigned spin = 0;

	while (*p != tag)
		spin_step(&spin);
}

static void wait_nonzero(volatile uint8_t *p)
{
	unsigned spin = 0;

	while (!*p)
		spin_step(&spin);
}

static void wait_rx(uint64_t upto)
{
	unsigned spin = 0;

	while (f.rx_done < upto)
		spin_step(&spin);
}

static size_t nslots(size_t size)
{
	size_t n = (FRB_ARENA / 2 - 4096) / size;

	if (n > (size_t)o.depth)
		n = (size_t)o.depth;
	return n ? n : 1;
}

/* Slot j of the receiving half (second half of the arena). */
static uint8_t *dst_slot(size_t size, size_t j)
{
	return f.arena + FRB_ARENA / 2 + j * size;
}

static uint8_t *src_slot(size_t size, size_t j)
{
	return f.arena + j * size;
}

static uint64_t remote_dst(size_t size, size_t j)
{
	return f.raddr + FRB_ARENA / 2 + j * size;
}

static uint64_t remote_src(size_t size, size_t j)
{
	return f.raddr + j * size;
}

/* ---- server ------------------------------------------------------------------------------- */

/* Progresses the endpoint; a SEND bandwidth row reposts each receive in the same slot order,
 * so that message m lands in slot m % nslots. */
static void progress_row(const struct cmd *row)
{
	int rx = poll_cq();

	if (row && row->op == OP_SEND && row->mode == MODE_BW)
		for (int i = 0; i < rx; i++) {
			size_t s = f.rx_slot_next;

			f.rx_slot_next = (s + 1) % nslots(row->size);
			POST_RX(fi_recv(f.ep, dst_slot(row->size, s), row->size, f.desc, 0, CTX_RX(s)));
		}
}

/* Progresses the endpoint (and the row's part) until a control message arrives. */
static void serve_until(int cfd, struct cmd *c, const struct cmd *row)
{
	struct pollfd pfd = {.fd = cfd, .events = POLLIN};
	unsigned spin = 0;
	int64_t limit = now_ns() + (int64_t)(o.time + o.timeout) * 1000000000;

	for (;;) {
		progress_row(row);
		if (!(++spin & 15)) {
			if (poll(&pfd, 1, 0) > 0)
				break;
			if (now_ns() > limit)
				die("server: no word from the client for %d s", o.timeout);
			sched_yield();
		}
	}
	xfer(cfd, c, sizeof *c, false);
}

static void server_pingpong(const struct cmd *row)
{
	size_t size = row->size;
	volatile uint8_t *last = dst_slot(size, 0) + size - 1;
	uint8_t *src = src_slot(size, 0);

	for (uint64_t it = 0;; it++) {
		uint8_t tag;

		deadline = now_ns() + (int64_t)(o.time + o.timeout) * 1000000000;
		if (row->op == OP_WRITE) {
			wait_nonzero(last);
			tag = *last;
			*last = 0;
		} else {
			wait_rx(it + 1); /* absolute: wait_tx may reap the next ping */
			tag = dst_slot(size, 0)[size - 1];
			POST_RX(fi_recv(f.ep, dst_slot(size, 0), size, f.desc, 0, CTX_RX(it % LAT_RX)));
		}
		src[size - 1] = tag;
		if (row->op == OP_WRITE)
			POST(fi_write(f.ep, src, size, f.desc, 0, remote_dst(size, 0), f.rkey, CTX_TX));
		else
			POST(fi_send(f.ep, src, size, f.desc, 0, CTX_TX));
		wait_tx(f.tx_posted);
		if (tag == FRB_FINAL)
			break;
	}
}

static void server_row(int cfd, const struct cmd *row)
{
	size_t size = row->size, ns = nslots(size);
	struct rep r = {0};
	struct cmd end;

	deadline = now_ns() + (int64_t)(o.time + o.timeout) * 1000000000;
	/* Set up the row. */
	memset(f.arena + FRB_ARENA / 2, 0, ns * size);
	if (row->op == OP_READ || row->mode == MODE_LAT)
		for (size_t j = 0; j < ns; j++)
			pattern_fill(src_slot(size, j), size, row->seed + 1, (uint32_t)j);
	f.rx_slot_next = 0;
	f.rx_done = 0;
	if (row->op == OP_SEND) {
		size_t n = row->mode == MODE_BW ? ns : LAT_RX;

		for (size_t j = 0; j < n; j++)
			POST_RX(fi_recv(f.ep, dst_slot(size, j), size, f.desc, 0, CTX_RX(j)));
	}
	xfer(cfd, &r, sizeof r, true); /* ready */

	if (row->mode == MODE_LAT && row->op != OP_READ)
		server_pingpong(row);
	serve_until(cfd, &end, row);
	if (end.type != CMD_END)
		die("server: protocol error (%u)", end.type);

	/* Verify. */
	if (row->mode == MODE_BW && row->op == OP_SEND) {
		unsigned spin = 0;

		deadline = now_ns() + (int64_t)o.timeout * 1000000000;
		while (f.rx_done < end.count) {
			progress_row(row);
			if (!(++spin & 15)) {
				check_deadline();
				sched_yield();
			}
		}
		r.value = f.rx_done;
	}
	if (row->mode == MODE_BW && row->op != OP_READ) {
		size_t filled = end.count < ns ? (size_t)end.count : ns;

		for (size_t j = 0; j < filled; j++)
			if (pattern_check(dst_slot(size, j), size, row->seed, (uint32_t)j, size)) {
				fprintf(stderr, "%s: server: %s bw %zu: slot %zu holds wrong data\n",
					who, op_name[row->op], size, j);
				r.status = -1;
				break;
			}
	} else if (row->mode == MODE_LAT && row->op != OP_READ) {
		if (pattern_check(dst_slot(size, 0), size, row->seed, 0, size - 1)) {
			fprintf(stderr, "%s: server: %s lat %zu: wrong data\n", who, op_name[row->op],
				size);
			r.status = -1;
		}
	}
	/* A SEND row leaves receives posted: cancel them before the next row. */
	if (row->op == OP_SEND)
		cancel_rx(row->mode == MODE_BW ? ns : LAT_RX);
	xfer(cfd, &r, sizeof r, true);
}

/* Cancels the n receives posted with contexts CTX_RX(0 .. n - 1). */
static void cancel_rx(size_t n)
{
	{
		for (size_t j = 0; j < n; j++)
			fi_cancel(&f.ep->fid, CTX_RX(j));
		/* Cancelled receives complete with FI_ECANCELED: drain them. */
		int64_t until = now_ns() + 200000000;

		while (now_ns() < until) {
			struct fi_cq_msg_entry e;
			ssize_t k = fi_cq_read(f.cq, &e, 1);

			if (k == -FI_EAVAIL) {
				struct fi_cq_err_entry err = {0};

				fi_cq_readerr(f.cq, &err, 0);
				if (err.err != FI_ECANCELED)
					die("completion error: %s", fi_strerror(err.err));
				if (--n == 0)
					break;
			} else if (k == -FI_EAGAIN) {
				sched_yield();
			} else if (k < 0) {
				die("fi_cq_read: %s", fi_strerror((int)-k));
			}
		}
		if (n)
			die("fi_cancel: %zu receives still posted", n);
	}
}

static int server(int lfd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	struct hello me = {.magic = FRB_MAGIC}, peer;
	int cfd, fport;

	who = "fi-rma-bench server";
	fport = server_fabric_listen();
	cfd = accept(lfd, (struct sockaddr *)&sa, &len);
	if (cfd < 0)
		die("accept: %s", strerror(errno));
	close(lfd);
	ctrl_opts(cfd);
	me.fabric_port = (uint32_t)fport;
	xfer(cfd, &me, sizeof me, true); /* the port first: the client connects, then keys */
	server_fabric_accept();
	me.addr = f.local_addr;
	me.key = f.key;
	xfer(cfd, &me, sizeof me, true);
	xfer(cfd, &peer, sizeof peer, false);
	if (peer.magic != FRB_MAGIC)
		die("bad hello");
	f.raddr = peer.addr;
	f.rkey = peer.key;
	for (;;) {
		struct cmd c;

		serve_until(cfd, &c, NULL);
		if (c.type == CMD_QUIT)
			break;
		if (c.type != CMD_ROW)
			die("protocol error (%u)", c.type);
		server_row(cfd, &c);
	}
	fabric_close();
	close(cfd);
	return 0;
}

/* ---- client ------------------------------------------------------------------------------- */

struct result {
	bool bw_done, lat_done;
	double gbps;
	uint64_t msgs;
	double med_us, p99_us;
	uint64_t iters;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int row_start(int cfd, struct cmd *c)
{
	struct rep r;

	c->type = CMD_ROW;
	xfer(cfd, c, sizeof *c, true);
	xfer(cfd, &r, sizeof r, false);
	return r.status;
}

static int row_end(int cfd, const struct cmd *row, uint64_t count, uint64_t *value)
{
	struct cmd c = *row;
	struct rep r;

	c.type = CMD_END;
	c.count = count;
	xfer(cfd, &c, sizeof c, true);
	xfer(cfd, &r, sizeof r, false);
	if (value)
		*value = r.value;
	return r.status;
}

static int client_bw(int cfd, int op, size_t size, uint32_t seed, struct result *res)
{
	struct cmd c = {.op = (uint32_t)op, .mode = MODE_BW, .seed = seed, .size = size};
	size_t ns = nslots(size);
	uint64_t depth = (uint64_t)o.depth, n = 0, got = 0;
	int64_t t0, t1, tend;
	int st = 0;

	memset(f.arena + FRB_ARENA / 2, 0, ns * size);
	if (op != OP_READ)
		for (size_t j = 0; j < ns; j++)
			pattern_fill(src_slot(size, j), size, seed, (uint32_t)j);
	if (row_start(cfd, &c))
		return -1;
	deadline = now_ns() + (int64_t)(o.time + o.timeout) * 1000000000;
	t0 = now_ns();
	tend = t0 + (int64_t)(o.time * 1e9);
	for (;;) {
		if (f.tx_posted - f.tx_done < depth) {
			size_t j = (size_t)(n % ns);

			if (op == OP_WRITE)
				POST(fi_write(f.ep, src_slot(size, j), size, f.desc, 0,
					      remote_dst(size, j), f.rkey, CTX_TX));
			else if (op == OP_READ)
				POST(fi_read(f.ep, dst_slot(size, j), size, f.desc, 0,
					     remote_src(size, j), f.rkey, CTX_TX));
			else
				POST(fi_send(f.ep, src_slot(size, j), size, f.desc, 0, CTX_TX));
			n++;
			if (!(n & 63) && now_ns() >= tend)
				break;
			continue;
		}
		poll_cq();
		if (now_ns() >= tend)
			break;
	}
	if (op != OP_READ) /* the fence: placed after every WRITE/SEND before it */
		POST(fi_read(f.ep, f.arena + FRB_SCRATCH, 8, f.desc, 0, f.raddr + FRB_SCRATCH,
			     f.rkey, CTX_TX));
	wait_tx(f.tx_posted);
	t1 = now_ns();

	if (op == OP_READ) {
		size_t filled = n < ns ? (size_t)n : ns;

		for (size_t j = 0; j < filled; j++)
			if (pattern_check(dst_slot(size, j), size, seed + 1, (uint32_t)j, size)) {
				fprintf(stderr, "%s: read bw %zu: slot %zu holds wrong data\n", who,
					size, j);
				st = -1;
				break;
			}
	}
	if (row_end(cfd, &c, n, &got))
		st = -1;
	if (op == OP_SEND && got != n) {
		fprintf(stderr, "%s: send bw %zu: %llu sent, %llu received\n", who, size,
			(unsigned long long)n, (unsigned long long)got);
		st = -1;
	}
	res->bw_done = st == 0;
	res->msgs = n;
	res->gbps = (double)n * (double)size / (double)(t1 - t0);
	return st;
}

static int client_lat(int cfd, int op, size_t size, uint32_t seed, struct result *res)
{
	struct cmd c = {.op = (uint32_t)op, .mode = MODE_LAT, .seed = seed, .size = size};
	static double samples[FRB_LAT_CAP];
	uint8_t *src = src_slot(size, 0), *dst = dst_slot(size, 0);
	volatile uint8_t *last = dst + size - 1;
	uint64_t it, timed = 0;
	int64_t tend = 0;
	int st = 0;

	memset(dst, 0, size);
	pattern_fill(src, size, seed, 0);
	if (row_start(cfd, &c))
		return -1;
	f.rx_done = 0;
	if (op == OP_SEND)
		for (int j = 0; j < LAT_RX; j++)
			POST_RX(fi_recv(f.ep, dst, size, f.desc, 0, CTX_RX(j)));
	for (it = 0;; it++) {
		bool final = false;
		uint8_t tag = (uint8_t)(1 + it % 250);
		int64_t t0;

		deadline = now_ns() + (int64_t)(o.time + o.timeout) * 1000000000;
		if (it == FRB_WARMUP)
			tend = now_ns() + (int64_t)(o.time * 1e9);
		if (it > FRB_WARMUP && (now_ns() >= tend || timed >= FRB_LAT_CAP))
			final = true;
		if (final)
			tag = FRB_FINAL;
		t0 = now_ns();
		if (op == OP_READ) {
			POST(fi_read(f.ep, dst, size, f.desc, 0, remote_src(size, 0), f.rkey, CTX_TX));
			wait_tx(f.tx_posted);
			if (final)
				break;
		} else {
			src[size - 1] = tag;
			if (op == OP_WRITE)
				POST(fi_write(f.ep, src, size, f.desc, 0, remote_dst(size, 0), f.rkey,
					      CTX_TX));
			else
				POST(fi_send(f.ep, src, size, f.desc, 0, CTX_TX));
			if (op == OP_WRITE) {
				wait_byte(last, tag);
				*last = 0;
			} else {
				wait_rx(it + 1);
				if (dst[size - 1] != tag) {
					fprintf(stderr, "%s: send lat %zu: pong %llu carries tag %u, not %u\n",
						who, size, (unsigned long long)it, dst[size - 1], tag);
					st = -1;
				}
				POST_RX(fi_recv(f.ep, dst, size, f.desc, 0, CTX_RX(it % LAT_RX)));
			}
			wait_tx(f.tx_posted);
			if (final)
				break;
		}
		if (it >= FRB_WARMUP)
			samples[timed++] = (double)(now_ns() - t0) / 1e3;
	}
	if (op != OP_READ && pattern_check(dst, size, seed + 1, 0, size - 1)) {
		fprintf(stderr, "%s: %s lat %zu: the pong holds wrong data\n", who, op_name[op], size);
		st = -1;
	}
	if (op == OP_READ && pattern_check(dst, size, seed + 1, 0, size)) {
		fprintf(stderr, "%s: read lat %zu: wrong data\n", who, size);
		st = -1;
	}
	if (op == OP_SEND)
		cancel_rx(LAT_RX);
	if (row_end(cfd, &c, it, NULL))
		st = -1;
	if (timed == 0) {
		fprintf(stderr, "%s: %s lat %zu: no sample\n", who, op_name[op], size);
		return -1;
	}
	qsort(samples, timed, sizeof samples[0], cmp_double);
	double div = op == OP_READ ? 1.0 : 2.0;

	res->med_us = samples[timed / 2] / div;
	res->p99_us = samples[(size_t)((double)(timed - 1) * 0.99)] / div;
	res->iters = timed;
	res->lat_done = st == 0;
	return st;
}

static int client(int ctrl_port_nr)
{
	struct hello srv, me = {.magic = FRB_MAGIC};
	static struct result res[OP_N][FRB_MAX_SIZES];
	int cfd = ctrl_connect(o.addr, ctrl_port_nr), st = 0;
	uint32_t seed = (uint32_t)getpid() * 7919u;
	FILE *csv = NULL;

	xfer(cfd, &srv, sizeof srv, false);
	if (srv.magic != FRB_MAGIC)
		die("bad hello from the server");
	client_fabric_connect((int)srv.fabric_port);
	xfer(cfd, &srv, sizeof srv, false);
	me.addr = f.local_addr;
	me.key = f.key;
	xfer(cfd, &me, sizeof me, true);
	f.raddr = srv.addr;
	f.rkey = srv.key;

	if (!o.quiet)
		fprintf(stderr, "%s: provider %s %s, fabric %s, tx depth %zu, mr_mode 0x%llx\n", who,
			f.info->fabric_attr->prov_name, fi_tostr(&f.info->ep_attr->type, FI_TYPE_EP_TYPE),
			f.info->fabric_attr->name, f.tx_size,
			(unsigned long long)f.info->domain_attr->mr_mode);
	for (int k = 0; k < o.nops; k++) {
		int op = o.ops[k];

		for (int i = 0; i < o.nsizes; i++) {
			size_t size = o.sizes[i];

			alarm((unsigned)(2 * (o.time + o.timeout) + 10));
			if (o.bw && client_bw(cfd, op, size, seed += 2, &res[op][i])) {
				fprintf(stderr, "%s: %s bw %zu failed\n", who, op_name[op], size);
				st = 1;
			}
			if (o.lat && client_lat(cfd, op, size, seed += 2, &res[op][i])) {
				fprintf(stderr, "%s: %s lat %zu failed\n", who, op_name[op], size);
				st = 1;
			}
			alarm(0);
			if (!o.quiet)
				fprintf(stderr, "\r%s: %s %zu done   ", who, op_name[op], size);
		}
	}
	if (!o.quiet)
		fputc('\n', stderr);
	struct cmd q = {.type = CMD_QUIT};

	xfer(cfd, &q, sizeof q, true);

	if (o.csv && !(csv = fopen(o.csv, "w")))
		die("%s: %s", o.csv, strerror(errno));
	if (csv)
		fprintf(csv, "op,size,gbps,msgs,lat_med_us,lat_p99_us,lat_iters\n");
	printf("# fi-rma-bench: libfabric %u.%u, provider %s (FI_EP_MSG), depth %d, %.2f s per "
	       "measurement\n",
	       FI_MAJOR(fi_version()), FI_MINOR(fi_version()), f.info->fabric_attr->prov_name,
	       o.depth, o.time);
	printf("# GB/s = 1e9 B/s; latency us: write/send half round trip, read whole round trip\n");
	printf("%-6s %9s %10s %10s %10s %10s\n", "op", "size", "GB/s", "msgs", "lat_med", "lat_p99");
	for (int k = 0; k < o.nops; k++) {
		int op = o.ops[k];

		for (int i = 0; i < o.nsizes; i++) {
			struct result *r = &res[op][i];
			char bw[32] = "-", msgs[32] = "-", med[32] = "-", p99[32] = "-";

			if (r->bw_done) {
				snprintf(bw, sizeof bw, "%.3f", r->gbps);
				snprintf(msgs, sizeof msgs, "%llu", (unsigned long long)r->msgs);
			}
			if (r->lat_done) {
				snprintf(med, sizeof med, "%.2f", r->med_us);
				snprintf(p99, sizeof p99, "%.2f", r->p99_us);
			}
			printf("%-6s %9zu %10s %10s %10s %10s\n", op_name[op], o.sizes[i], bw, msgs,
			       med, p99);
			if (csv) {
				char bw6[32] = "";

				if (r->bw_done)
					snprintf(bw6, sizeof bw6, "%.6f", r->gbps);
				fprintf(csv, "%s,%zu,%s,%s,%s,%s,%llu\n", op_name[op], o.sizes[i], bw6,
					r->bw_done ? msgs : "", r->lat_done ? med : "",
					r->lat_done ? p99 : "", (unsigned long long)r->iters);
			}
		}
	}
	if (csv)
		fclose(csv);
	fabric_close();
	close(cfd);
	return st;
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fi-rma-bench [options] [HOST]\n"
		"\n"
		"libfabric tcp provider (FI_EP_MSG): fi_write / fi_read / fi_send bandwidth with a\n"
		"deep queue and ping-pong latency, data verified. Without HOST and -S: client and a\n"
		"forked server on --addr (default 127.0.0.1).\n"
		"\n"
		"  -S, --server        server only, on --addr and control port --port\n"
		"  HOST                client only, to a server at HOST (-S)\n"
		"  -a, --addr A        server address (default 127.0.0.1)\n"
		"  -p, --port P        control port (default ephemeral with the forked server, else 47311)\n"
		"  -s, --sizes LIST    sizes, K/M suffixes (default 8,32,128,512,2K,8K,32K,128K,512K,2M,4M)\n"
		"  -o, --ops LIST      any of write,read,send (default all)\n"
		"  -d, --depth N       operations in flight, bandwidth rows (default 64)\n"
		"  -t, --time SEC      time per measurement (default 0.5)\n"
		"      --bw-only, --lat-only\n"
		"      --short         sizes 8,4K,1M and 0.05 s per measurement\n"
		"      --timeout SEC   longest wait beyond the row time (default 30)\n"
		"      --csv FILE      rows as CSV\n"
		"  -q, --quiet\n");
}

static void parse_list(const char *arg, bool sizes)
{
	char *copy = strdup(arg), *save = NULL, *tok;

	if (sizes)
		o.nsizes = 0;
	else
		o.nops = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (sizes) {
			if (o.nsizes == FRB_MAX_SIZES)
				die("too many sizes");
			o.sizes[o.nsizes++] = parse_size(tok);
			continue;
		}
		int op = -1;

		for (int i = 0; i < OP_N; i++)
			if (!strcmp(tok, op_name[i]))
				op = i;
		if (op < 0 || o.nops == OP_N) {
			fprintf(stderr, "%s: bad op '%s'\n", who, tok);
			exit(2);
		}
		o.ops[o.nops++] = op;
	}
	free(copy);
}

int main(int argc, char **argv)
{
	enum { O_BW = 256, O_LAT, O_SHORT, O_TIMEOUT, O_CSV };
	static const struct option lo[] = {
		{"server", no_argument, NULL, 'S'},   {"addr", required_argument, NULL, 'a'},
		{"port", required_argument, NULL, 'p'}, {"sizes", required_argument, NULL, 's'},
		{"ops", required_argument, NULL, 'o'},  {"depth", required_argument, NULL, 'd'},
		{"time", required_argument, NULL, 't'}, {"bw-only", no_argument, NULL, O_BW},
		{"lat-only", no_argument, NULL, O_LAT}, {"short", no_argument, NULL, O_SHORT},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{"csv", required_argument, NULL, O_CSV}, {"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0}};
	int c, lfd, port;
	pid_t pid;

	parse_list("8,32,128,512,2K,8K,32K,128K,512K,2M,4M", true);
	parse_list("write,read,send", false);
	while ((c = getopt_long(argc, argv, "Sa:p:s:o:d:t:qh", lo, NULL)) != -1) {
		switch (c) {
		case 'S': o.server_only = true; break;
		case 'a': o.addr = optarg; break;
		case 'p': o.port = atoi(optarg); break;
		case 's': parse_list(optarg, true); break;
		case 'o': parse_list(optarg, false); break;
		case 'd': o.depth = atoi(optarg); break;
		case 't': o.time = atof(optarg); break;
		case 'q': o.quiet = true; break;
		case O_BW: o.lat = false; break;
		case O_LAT: o.bw = false; break;
		case O_SHORT:
			parse_list("8,4K,1M", true);
			o.time = 0.05;
			break;
		case O_TIMEOUT: o.timeout = atoi(optarg); break;
		case O_CSV: o.csv = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		o.client_only = true;
		o.addr = argv[optind];
	}
	if (o.depth < 1 || o.depth > 4096 || o.time <= 0 || o.time > 600 || o.timeout < 1 ||
	    o.port < 0 || o.port > 65535 || (!o.bw && !o.lat) || (o.server_only && o.client_only)) {
		usage(stderr);
		return 2;
	}
	if (o.client_only)
		return client(o.port ? o.port : 47311);
	lfd = ctrl_listen(o.addr, o.port ? o.port : (o.server_only ? 47311 : 0));
	if (o.server_only)
		return server(lfd);

	port = ctrl_port(lfd);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		_exit(server(lfd));
	}
	close(lfd);
	c = client(port);
	int wst;

	for (int i = 0; i < 100; i++) { /* up to 10 s for the server to finish */
		if (waitpid(pid, &wst, WNOHANG) == pid)
			return c || !WIFEXITED(wst) || WEXITSTATUS(wst) ? 1 : 0;
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &wst, 0);
	return 1;
}
