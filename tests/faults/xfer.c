// SPDX-License-Identifier: MIT
/*
 * xfer: an rdma_cm client/server that moves data with RDMA WRITE, RDMA READ and SEND over one
 * or many connections, checks every byte end to end, and reports what happened as JSON lines.
 * It is the workload of the network-fault tests (tests/faults) and of the load/soak tests
 * (tests/soak); it runs under siw-run (softiwarp) or on any other rdma_cm stack.
 *
 *	xfer server --bind IP [--port P] [options]
 *	xfer client --addr IP --port P [options]
 *
 * Protocol (per connection). The client's connect private data carries its seed; the server's
 * accept private data offers two regions: W (depth x chunk, remote write) and R (read only,
 * filled with a pattern of the server's seed). The client runs "rounds", up to --depth at a
 * time, each of one kind taken in turn from --ops:
 *	w  WRITE a chunk (pattern of the client's seed and the round) into W's slot, then SEND a
 *	   NOTIFY with its checksum; the server checks W's slot and answers ACK(ok).
 *	s  SEND a DATA message: header + chunk; the server checks it and answers ACK(ok).
 *	r  READ a chunk from R at a round-dependent offset and check it against R's pattern.
 * A round is done when all its work requests completed and its ACK came (w, s). After the last
 * round (--mib, --rounds or --seconds) the client sends DONE, the server answers DONE_ACK with
 * the bytes it verified, the client disconnects. A checksum mismatch anywhere is "corrupt".
 *
 * --seconds instead of a size: rounds go on for that long, counted from the moment all
 * connections are up when they are all open at once (--parallel = --conns), else from the start.
 * --pause-at R --pause-seconds S: the client lets each connection go idle (nothing in flight)
 * before round R for S seconds and prints {"event":"paused"} (keepalive tests).
 *
 * Faults: a failed work completion, or a DISCONNECTED event before DONE_ACK, fails the
 * connection. The program then waits (--disc-timeout) for the stack's own DISCONNECTED event
 * (calls rdma_disconnect itself only if none came) and for every posted work request to
 * complete (flushed), and reports how long each step took. --stall-timeout makes the
 * application give up a connection that made no progress for that long (rdma_disconnect).
 *
 * Output (stdout, one JSON object per line): {"event":"listening","port":P} (server),
 * {"event":"progress",...} every --progress-ms, {"event":"conn",...} per failed connection (or
 * every connection with --verbose), {"event":"result",...} at the end with totals, memory and
 * descriptor counts. Exit status: 0 all connections ok; 1 some failed (cleanly: flushed and
 * disconnected); 2 data corruption seen; 3 a failed connection did not flush or disconnect in
 * time; 4 setup or usage error; 5 --timeout expired (the process did not finish).
 *
 * Threads: the main thread runs the connection manager (events, connects, accepts, teardown);
 * --threads worker threads own the connections' completion queues and post all work.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define XF_MAGIC       0x58465231u /* "XFR1" */
#define XF_MAX_THREADS 16
#define XF_MAX_STATUS  32

enum msg_type { MSG_NOTIFY = 1, MSG_DATA, MSG_ACK, MSG_DONE, MSG_DONE_ACK };

struct xf_msg {
	uint32_t magic;
	uint8_t type;
	uint8_t ok;
	uint16_t rsvd;
	uint32_t round;
	uint32_t slot;
	uint32_t len;
	uint32_t rsvd2;
	uint64_t csum;
	uint64_t bytes; /* DONE: bytes the client verified; DONE_ACK: bytes the server verified */
};

/* Client -> server, in the connect private data. */
struct xf_hello {
	uint32_t magic;
	uint32_t conn;
	uint64_t seed;
	uint32_t chunk;
	uint32_t depth;
};

/* Server -> client, in the accept private data. */
struct xf_offer {
	uint32_t magic;
	uint32_t w_rkey;
	uint64_t w_addr;
	uint32_t w_len;
	uint32_t r_rkey;
	uint64_t r_addr;
	uint32_t r_len;
	uint32_t rsvd;
	uint64_t r_seed;
};

/* wr_id = conn index << 32 | kind << 24 | slot */
enum wr_kind { WK_WRITE = 1, WK_NOTIFY, WK_DATA, WK_READ, WK_RECV, WK_ACK, WK_DONE };

enum conn_phase {
	PH_SETUP,     /* main thread: resolving, connecting, accepting */
	PH_RUN,       /* established, rounds running */
	PH_DONE_SENT, /* client: DONE sent, waiting for DONE_ACK */
	PH_CLOSING,   /* success: disconnecting */
	PH_FAILED,    /* a fault: waiting for the disconnect event and the flush */
	PH_FINISHED,  /* handed back to the main thread for teardown */
};

enum conn_outcome {
	OC_NONE,
	OC_OK,
	OC_FAILED,
	OC_STALLED,
	OC_CORRUPT,
	OC_CONNECT_FAILED,
	OC_ABORTED,
};
static const char *const outcome_name[] = {
    "none", "ok", "failed", "stalled", "corrupt", "connect_failed", "aborted"};

struct slot {
	int pending; /* work requests not yet completed */
	bool need_ack;
	bool busy;
	char kind;
	uint32_t round;
	uint32_t len;
	uint64_t csum; /* expected (READ) */
};

struct worker;

struct conn {
	unsigned idx;
	struct worker *w;
	struct rdma_cm_id *id;
	struct ibv_mr *mr;
	uint8_t *mem;
	int arena;
	uint64_t seed;
	/* set by the main thread, read by the worker (release/acquire on the atomics) */
	struct xf_offer offer;
	atomic_bool established;
	atomic_bool disconnected;
	atomic_bool connect_failed;
	int64_t t_disc_ms; /* wall clock of the DISCONNECTED event */
	int cm_status;     /* status of the failing CM event */

	/* worker owned */
	enum conn_phase phase;
	enum conn_outcome outcome;
	struct slot *slots;
	uint32_t next_round, rounds_target, rounds_done;
	uint64_t bytes_verified;
	uint64_t peer_bytes; /* DONE_ACK: what the server verified */
	unsigned posted_send, done_send, posted_recv, done_recv;
	unsigned flushed, wc_errors;
	int first_status; /* first failed completion (-1: none) */
	const char *why;
	int64_t t_start_ms, t_fail_ms, t_last_progress_ms, t_phase_ms, t_finish_ms;
	bool disc_unprompted; /* the DISCONNECTED event came without our rdma_disconnect */
	bool we_disconnected;
	bool disc_seen;
	unsigned ack_next;      /* server: ring of ACK headers */
	int64_t pause_start_ms; /* --pause-at: when the connection went idle */
	bool pause_done;
	struct conn *next; /* lists */
};

struct worker {
	int id;
	pthread_t thread;
	struct ibv_comp_channel *ch;
	struct ibv_cq *cq;
	pthread_mutex_t lock;
	struct conn *incoming; /* handed over by the main thread */
	struct conn **active;
	unsigned nactive, cap_active;
	uint64_t status_count[XF_MAX_STATUS];
	atomic_uint_fast64_t bytes;
	atomic_uint_fast64_t rounds;
};

static struct {
	bool server;
	const char *addr, *bind;
	unsigned port;
	unsigned conns, parallel, threads;
	uint32_t chunk, depth;
	char ops[16];
	uint64_t mib, rounds;
	double seconds;
	double stall_timeout, disc_timeout, drain_timeout, timeout;
	unsigned progress_ms;
	bool verbose, forever;
	uint64_t seed;
	unsigned connect_window; /* client: connections being set up at once */
	uint32_t abort_at;       /* client: destroy QP and id after this many rounds */
	unsigned nofile;         /* RLIMIT_NOFILE to run with (0: raised as needed) */
	uint32_t pause_at;       /* client: idle before this round ... */
	double pause_seconds;    /* ... for this long */
} opt = {
    .port = 0,
    .conns = 1,
    .threads = 1,
    .chunk = 65536,
    .depth = 8,
    .ops = "wsr",
    .disc_timeout = 15,
    .drain_timeout = 10,
    .timeout = 600,
    .progress_ms = 250,
    .seed = 0x5eed,
    .connect_window = 64,
};

static struct ibv_pd *g_pd;
static struct ibv_context *g_verbs;
static struct worker g_workers[XF_MAX_THREADS];
static struct conn *g_conns;
static uint8_t *g_arena;
static size_t g_arena_slot;
static int *g_arena_free;
static unsigned g_arena_nfree;
static atomic_bool g_stop;
static atomic_bool g_workers_quit;
static struct conn *g_finished; /* worker -> main: connections to tear down */
static pthread_mutex_t g_fin_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint g_nfinished_total;
static int64_t g_t0_ms;
/* --seconds: rounds go on until then (0: not known yet, all connections are still coming) */
static _Atomic int64_t g_run_until_ms;

/* ---- small helpers ------------------------------------------------------------------------ */

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, rss = 0;

	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream itself */
}

/* TCP memory of this network namespace, in pages (/proc/net/sockstat "TCP: ... mem N"). */
static long tcp_mem_pages(void)
{
	FILE *f = fopen("/proc/net/sockstat", "r");
	char line[256];
	long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *m;

		if (strncmp(line, "TCP:", 4))
			continue;
		m = strstr(line, " mem ");
		if (m)
			v = atol(m + 5);
	}
	fclose(f);
	return v;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

#define CSUM_INIT  0xcbf29ce484222325ull
#define CSUM_PRIME 0x100000001b3ull

/* Fills buf (len a multiple of 8) with the pattern of key from word word0; returns its csum. */
static uint64_t fill(void *buf, uint32_t len, uint64_t key, uint64_t word0)
{
	uint64_t h = CSUM_INIT;
	uint8_t *p = buf;

	for (uint32_t i = 0; i < len / 8; i++) {
		uint64_t v = mix64(key + word0 + i);

		memcpy(p + 8 * i, &v, 8);
		h = (h ^ v) * CSUM_PRIME;
	}
	return h;
}

static uint64_t csum_pattern(uint32_t len, uint64_t key, uint64_t word0)
{
	uint64_t h = CSUM_INIT;

	for (uint32_t i = 0; i < len / 8; i++)
		h = (h ^ mix64(key + word0 + i)) * CSUM_PRIME;
	return h;
}

static uint64_t csum_buf(const void *buf, uint32_t len)
{
	const uint8_t *p = buf;
	uint64_t h = CSUM_INIT;

	for (uint32_t i = 0; i < len / 8; i++) {
		uint64_t v;

		memcpy(&v, p + 8 * i, 8);
		h = (h ^ v) * CSUM_PRIME;
	}
	return h;
}

static uint64_t round_key(const struct conn *c, uint32_t round)
{
	return mix64(c->seed ^ ((uint64_t)round << 20));
}

/* ---- memory layout of one connection ------------------------------------------------------ */

/*
 * Client: msgs[depth + 2] | src[depth] | dst[depth] | rx[depth + 2] (messages)
 * Server: W[depth] | R[rlen] | rx[depth + 2] (message + chunk) | acks[2 * depth + 4]
 */
static unsigned nrx(void)
{
	return opt.depth + 2;
}

static uint32_t r_len(void)
{
	return opt.chunk * 4;
}

static size_t msg_slot(void)
{
	return sizeof(struct xf_msg);
}

static size_t rx_size(void)
{
	return opt.server ? sizeof(struct xf_msg) + opt.chunk : sizeof(struct xf_msg);
}

static unsigned nacks(void)
{
	return 2 * opt.depth + 4;
}

static size_t conn_mem_size(void)
{
	size_t s;

	if (opt.server)
		s = (size_t)opt.depth * opt.chunk + r_len() + nrx() * rx_size() +
		    nacks() * msg_slot();
	else
		s = (opt.depth + 2) * msg_slot() + 2 * (size_t)opt.depth * opt.chunk +
		    nrx() * rx_size();
	return (s + 4095) & ~(size_t)4095;
}

static uint8_t *c_msgs(struct conn *c)
{
	return c->mem;
}

static uint8_t *c_src(struct conn *c)
{
	return c->mem + (opt.depth + 2) * msg_slot();
}

static uint8_t *c_dst(struct conn *c)
{
	return c_src(c) + (size_t)opt.depth * opt.chunk;
}

static uint8_t *c_rx(struct conn *c)
{
	if (opt.server)
		return c->mem + (size_t)opt.depth * opt.chunk + r_len();
	return c_dst(c) + (size_t)opt.depth * opt.chunk;
}

static uint8_t *s_w(struct conn *c)
{
	return c->mem;
}

static uint8_t *s_r(struct conn *c)
{
	return c->mem + (size_t)opt.depth * opt.chunk;
}

static uint8_t *s_acks(struct conn *c)
{
	return c_rx(c) + nrx() * rx_size();
}

/* ---- JSON output ---------------------------------------------------------------------------- */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void out_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out_line(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void conn_report(const struct conn *c)
{
	out_line(
	    "{\"event\":\"conn\",\"role\":\"%s\",\"conn\":%u,\"outcome\":\"%s\",\"why\":\"%s\","
	    "\"rounds\":%u,\"bytes_verified\":%" PRIu64 ",\"peer_bytes\":%" PRIu64
	    ",\"first_status\":\"%s\",\"wc_errors\":%u,\"flushed\":%u,"
	    "\"posted_send\":%u,\"done_send\":%u,\"posted_recv\":%u,\"done_recv\":%u,"
	    "\"disc_seen\":%s,\"disc_unprompted\":%s,\"cm_status\":%d,"
	    "\"t_start_ms\":%" PRId64 ",\"t_fail_ms\":%" PRId64 ",\"t_disc_ms\":%" PRId64
	    ",\"t_finish_ms\":%" PRId64 "}",
	    opt.server ? "server" : "client", c->idx, outcome_name[c->outcome],
	    c->why ? c->why : "", c->rounds_done, c->bytes_verified, c->peer_bytes,
	    c->first_status >= 0 ? ibv_wc_status_str(c->first_status) : "", c->wc_errors,
	    c->flushed, c->posted_send, c->done_send, c->posted_recv, c->done_recv,
	    c->disc_seen ? "true" : "false", c->disc_unprompted ? "true" : "false", c->cm_status,
	    c->t_start_ms, c->t_fail_ms, c->t_disc_ms, c->t_finish_ms);
}

/* ---- posting ----------------------------------------------------------------------------------
 */

static uint64_t wrid(const struct conn *c, enum wr_kind k, unsigned slot)
{
	return (uint64_t)c->idx << 32 | (uint64_t)k << 24 | slot;
}

static int post_recv(struct conn *c, unsigned i)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)(c_rx(c) + i * rx_size()),
	    .length = (uint32_t)rx_size(),
	    .lkey = c->mr->lkey,
	};
	struct ibv_recv_wr wr = {.wr_id = wrid(c, WK_RECV, i), .sg_list = &sge, .num_sge = 1};
	struct ibv_recv_wr *bad;
	int r = ibv_post_recv(c->id->qp, &wr, &bad);

	if (!r)
		c->posted_recv++;
	return r;
}

static int post_send(struct conn *c, struct ibv_send_wr *wr)
{
	struct ibv_send_wr *bad;
	int r;

	wr->send_flags |= IBV_SEND_SIGNALED;
	r = ibv_post_send(c->id->qp, wr, &bad);
	if (!r)
		c->posted_send++;
	return r;
}

/* ---- the worker's view of a connection --------------------------------------------------------
 */

static void conn_fail(struct conn *c, enum conn_outcome oc, const char *why)
{
	if (c->phase == PH_FAILED || c->phase >= PH_FINISHED)
		return;
	/* A failure after the peer confirmed everything is still a failure of the close. */
	c->outcome = oc;
	c->why = why;
	c->phase = PH_FAILED;
	c->t_fail_ms = wall_ms();
	c->t_phase_ms = mono_ms();
}

static bool conn_drained(const struct conn *c)
{
	return c->done_send == c->posted_send && c->done_recv == c->posted_recv;
}

static void conn_finish(struct conn *c)
{
	c->phase = PH_FINISHED;
	c->t_finish_ms = wall_ms();
	pthread_mutex_lock(&g_fin_lock);
	c->next = g_finished;
	g_finished = c;
	pthread_mutex_unlock(&g_fin_lock);
}

/* --pause-at: no new round from pause_at on until the pause is over. */
static bool pausing(const struct conn *c)
{
	return opt.pause_at && !c->pause_done && c->next_round >= opt.pause_at;
}

static bool more_rounds(struct conn *c)
{
	if (atomic_load(&g_stop))
		return false;
	if (pausing(c))
		return true;
	if (opt.seconds > 0) {
		int64_t end = atomic_load_explicit(&g_run_until_ms, memory_order_relaxed);

		return !end || mono_ms() < end;
	}
	return c->next_round < c->rounds_target;
}

static int client_post_round(struct conn *c, unsigned s)
{
	struct slot *sl = &c->slots[s];
	uint32_t round = c->next_round;
	char kind = opt.ops[round % strlen(opt.ops)];
	struct xf_msg *m = (struct xf_msg *)(c_msgs(c) + s * msg_slot());
	uint8_t *src = c_src(c) + (size_t)s * opt.chunk;
	struct ibv_sge sge[2];
	struct ibv_send_wr wr;
	int r;

	memset(sl, 0, sizeof(*sl));
	sl->busy = true;
	sl->kind = kind;
	sl->round = round;
	sl->len = opt.chunk;
	memset(&wr, 0, sizeof(wr));
	memset(m, 0, sizeof(*m));
	m->magic = XF_MAGIC;
	m->round = round;
	m->slot = s;
	m->len = opt.chunk;

	if (kind == 'w') {
		m->type = MSG_NOTIFY;
		m->csum = fill(src, opt.chunk, round_key(c, round), 0);
		sge[0] = (struct ibv_sge){(uintptr_t)src, opt.chunk, c->mr->lkey};
		wr.wr_id = wrid(c, WK_WRITE, s);
		wr.opcode = IBV_WR_RDMA_WRITE;
		wr.sg_list = sge;
		wr.num_sge = 1;
		wr.wr.rdma.remote_addr = c->offer.w_addr + (uint64_t)s * opt.chunk;
		wr.wr.rdma.rkey = c->offer.w_rkey;
		r = post_send(c, &wr);
		if (r)
			return r;
		sl->pending++;
		sge[0] = (struct ibv_sge){(uintptr_t)m, sizeof(*m), c->mr->lkey};
		memset(&wr, 0, sizeof(wr));
		wr.wr_id = wrid(c, WK_NOTIFY, s);
		wr.opcode = IBV_WR_SEND;
		wr.sg_list = sge;
		wr.num_sge = 1;
		r = post_send(c, &wr);
		if (r)
			return r;
		sl->pending++;
		sl->need_ack = true;
	} else if (kind == 's') {
		m->type = MSG_DATA;
		m->csum = fill(src, opt.chunk, round_key(c, round), 0);
		sge[0] = (struct ibv_sge){(uintptr_t)m, sizeof(*m), c->mr->lkey};
		sge[1] = (struct ibv_sge){(uintptr_t)src, opt.chunk, c->mr->lkey};
		wr.wr_id = wrid(c, WK_DATA, s);
		wr.opcode = IBV_WR_SEND;
		wr.sg_list = sge;
		wr.num_sge = 2;
		r = post_send(c, &wr);
		if (r)
			return r;
		sl->pending++;
		sl->need_ack = true;
	} else {
		uint32_t words = (c->offer.r_len - opt.chunk) / 8 + 1;
		uint64_t off = (mix64(c->seed + round) % words) * 8;
		uint8_t *dst = c_dst(c) + (size_t)s * opt.chunk;

		memset(dst, 0xee, opt.chunk);
		sl->csum = csum_pattern(opt.chunk, c->offer.r_seed, off / 8);
		sge[0] = (struct ibv_sge){(uintptr_t)dst, opt.chunk, c->mr->lkey};
		wr.wr_id = wrid(c, WK_READ, s);
		wr.opcode = IBV_WR_RDMA_READ;
		wr.sg_list = sge;
		wr.num_sge = 1;
		wr.wr.rdma.remote_addr = c->offer.r_addr + off;
		wr.wr.rdma.rkey = c->offer.r_rkey;
		r = post_send(c, &wr);
		if (r)
			return r;
		sl->pending++;
	}
	c->next_round++;
	return 0;
}

static void client_round_check(struct conn *c, unsigned s)
{
	struct slot *sl = &c->slots[s];

	if (!sl->busy || sl->pending || sl->need_ack)
		return;
	sl->busy = false;
	c->rounds_done++;
	c->bytes_verified += sl->len;
	c->t_last_progress_ms = mono_ms();
	atomic_fetch_add(&c->w->bytes, sl->len);
	atomic_fetch_add(&c->w->rounds, 1);
}

static int send_msg(struct conn *c, enum wr_kind k, const struct xf_msg *m)
{
	struct ibv_sge sge = {(uintptr_t)m, sizeof(*m), 0};
	struct ibv_send_wr wr;

	memset(&wr, 0, sizeof(wr));
	wr.wr_id = wrid(c, k, 0);
	wr.opcode = IBV_WR_SEND;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_INLINE;
	return post_send(c, &wr);
}

/* Drives a connection's state machine as far as it goes now. */
static void conn_drive(struct conn *c)
{
	int64_t now = mono_ms();

	if (c->phase >= PH_FINISHED)
		return;
	if (atomic_load_explicit(&c->connect_failed, memory_order_acquire) &&
	    !atomic_load_explicit(&c->established, memory_order_acquire)) {
		c->outcome = OC_CONNECT_FAILED;
		c->why = "connect";
		c->t_fail_ms = wall_ms();
		conn_finish(c);
		return;
	}
	if (c->phase == PH_SETUP) {
		if (!atomic_load_explicit(&c->established, memory_order_acquire)) {
			if (atomic_load_explicit(&c->disconnected, memory_order_acquire)) {
				c->outcome = OC_CONNECT_FAILED;
				c->why = "disconnected before established";
				conn_finish(c);
			}
			return;
		}
		c->phase = PH_RUN;
		c->t_start_ms = wall_ms();
		c->t_last_progress_ms = now;
	}
	if (!c->disc_seen && atomic_load_explicit(&c->disconnected, memory_order_acquire)) {
		c->disc_seen = true;
		c->disc_unprompted = !c->we_disconnected;
		if (c->phase == PH_RUN || c->phase == PH_DONE_SENT) {
			/* The server expects the client's disconnect after DONE_ACK. */
			if (opt.server && c->phase == PH_DONE_SENT) {
				c->phase = PH_CLOSING;
				c->t_phase_ms = now;
			} else {
				conn_fail(c, OC_FAILED, "disconnected");
			}
		}
	}

	switch (c->phase) {
	case PH_RUN:
		if (!opt.server && opt.abort_at && c->rounds_done >= opt.abort_at) {
			/* --abort-at: tear down with work in flight, no disconnect (a crash) */
			c->outcome = OC_ABORTED;
			c->why = "aborted";
			c->t_fail_ms = wall_ms();
			conn_finish(c);
			return;
		}
		if (!opt.server && pausing(c)) {
			bool idle = true;

			for (unsigned s = 0; s < opt.depth && idle; s++)
				idle = !c->slots[s].busy;
			if (!idle)
				break;
			if (!c->pause_start_ms) {
				c->pause_start_ms = now;
				out_line("{\"event\":\"paused\",\"conn\":%u,\"round\":%u,"
					 "\"t_ms\":%" PRId64 "}",
					 c->idx, c->next_round, wall_ms());
			}
			if (now - c->pause_start_ms < (int64_t)(opt.pause_seconds * 1000)) {
				c->t_last_progress_ms = now;
				break;
			}
			c->pause_done = true;
		}
		if (opt.server) {
			if (opt.stall_timeout > 0 &&
			    now - c->t_last_progress_ms > (int64_t)(opt.stall_timeout * 1000))
				conn_fail(c, OC_STALLED, "no progress");
			break;
		}
		for (unsigned s = 0; s < opt.depth; s++) {
			if (c->slots[s].busy)
				continue;
			if (!more_rounds(c) || pausing(c))
				break;
			if (client_post_round(c, s)) {
				conn_fail(c, OC_FAILED, "post_send");
				return;
			}
		}
		if (!more_rounds(c)) {
			bool idle = true;

			for (unsigned s = 0; s < opt.depth && idle; s++)
				idle = !c->slots[s].busy;
			if (idle) {
				struct xf_msg *m =
				    (struct xf_msg *)(c_msgs(c) + opt.depth * msg_slot());

				memset(m, 0, sizeof(*m));
				m->magic = XF_MAGIC;
				m->type = MSG_DONE;
				m->round = c->rounds_done;
				m->bytes = c->bytes_verified;
				if (send_msg(c, WK_DONE, m)) {
					conn_fail(c, OC_FAILED, "post_send");
					return;
				}
				c->phase = PH_DONE_SENT;
			}
		}
		if (opt.stall_timeout > 0 && c->phase == PH_RUN &&
		    now - c->t_last_progress_ms > (int64_t)(opt.stall_timeout * 1000))
			conn_fail(c, OC_STALLED, "no progress");
		break;
	case PH_DONE_SENT:
		if (opt.stall_timeout > 0 &&
		    now - c->t_last_progress_ms > (int64_t)(opt.stall_timeout * 1000))
			conn_fail(c, OC_STALLED, "no DONE_ACK");
		break;
	case PH_CLOSING:
		/* Success: the client disconnects, the server answers the disconnect. */
		if (!c->we_disconnected && (!opt.server || c->disc_seen)) {
			c->we_disconnected = true;
			rdma_disconnect(c->id);
		}
		if (c->disc_seen && conn_drained(c)) {
			if (c->outcome == OC_NONE)
				c->outcome = OC_OK;
			conn_finish(c);
		} else if (now - c->t_phase_ms > (int64_t)(opt.drain_timeout * 1000)) {
			c->why = c->disc_seen ? "close: not flushed" : "close: no disconnect event";
			c->outcome = OC_FAILED;
			conn_finish(c);
		}
		break;
	case PH_FAILED:
		/* Wait for the stack's own disconnect event first; nudge it if it does not come. */
		if (!c->disc_seen && !c->we_disconnected &&
		    (c->outcome == OC_STALLED || c->outcome == OC_CORRUPT ||
		     now - c->t_phase_ms > (int64_t)(opt.disc_timeout * 1000))) {
			c->we_disconnected = true;
			rdma_disconnect(c->id);
		}
		if (c->disc_seen && conn_drained(c)) {
			conn_finish(c);
		} else if (now - c->t_phase_ms >
			   (int64_t)((opt.disc_timeout + opt.drain_timeout) * 1000)) {
			conn_finish(c); /* reported as not flushed / not disconnected */
		}
		break;
	default:
		break;
	}
}

static void server_on_recv(struct conn *c, unsigned i, uint32_t byte_len)
{
	const struct xf_msg *m = (const struct xf_msg *)(c_rx(c) + i * rx_size());
	struct xf_msg *ack = (struct xf_msg *)(s_acks(c) + (c->ack_next++ % nacks()) * msg_slot());
	uint64_t got = 0, want;
	bool ok = false;

	if (byte_len < sizeof(*m) || m->magic != XF_MAGIC) {
		conn_fail(c, OC_CORRUPT, "bad message");
		return;
	}
	memset(ack, 0, sizeof(*ack));
	ack->magic = XF_MAGIC;
	ack->round = m->round;
	ack->slot = m->slot;
	switch (m->type) {
	case MSG_NOTIFY:
		if (m->slot >= opt.depth || m->len != opt.chunk)
			break;
		got = csum_buf(s_w(c) + (size_t)m->slot * opt.chunk, m->len);
		want = csum_pattern(m->len, round_key(c, m->round), 0);
		ok = got == m->csum && got == want;
		break;
	case MSG_DATA:
		if (m->len != opt.chunk || byte_len != sizeof(*m) + m->len)
			break;
		got = csum_buf((const uint8_t *)(m + 1), m->len);
		want = csum_pattern(m->len, round_key(c, m->round), 0);
		ok = got == m->csum && got == want;
		break;
	case MSG_DONE:
		c->peer_bytes = m->bytes;
		ack->type = MSG_DONE_ACK;
		ack->ok = 1;
		ack->bytes = c->bytes_verified;
		if (post_recv(c, i) || send_msg(c, WK_DONE, ack)) {
			conn_fail(c, OC_FAILED, "post");
			return;
		}
		c->phase = PH_DONE_SENT;
		c->t_phase_ms = mono_ms();
		c->t_last_progress_ms = mono_ms();
		return;
	default:
		break;
	}
	if (!ok) {
		conn_fail(c, OC_CORRUPT,
			  m->type == MSG_NOTIFY ? "WRITE data checksum"
			  : m->type == MSG_DATA ? "SEND data checksum"
						: "bad message");
		return;
	}
	c->rounds_done++;
	c->bytes_verified += m->len;
	c->t_last_progress_ms = mono_ms();
	atomic_fetch_add(&c->w->bytes, m->len);
	atomic_fetch_add(&c->w->rounds, 1);
	ack->type = MSG_ACK;
	ack->ok = 1;
	ack->csum = got;
	/* The buffer goes back before the ACK: the client's next SEND must find a receive. */
	if (post_recv(c, i) || send_msg(c, WK_ACK, ack))
		conn_fail(c, OC_FAILED, "post");
}

static void client_on_recv(struct conn *c, unsigned i, uint32_t byte_len)
{
	const struct xf_msg *m = (const struct xf_msg *)(c_rx(c) + i * rx_size());
	struct slot *sl;

	if (byte_len < sizeof(*m) || m->magic != XF_MAGIC) {
		conn_fail(c, OC_CORRUPT, "bad message");
		return;
	}
	if (m->type == MSG_DONE_ACK) {
		c->peer_bytes = m->bytes;
		if (c->phase == PH_DONE_SENT) {
			c->phase = PH_CLOSING;
			c->t_phase_ms = mono_ms();
		}
		return;
	}
	if (m->type != MSG_ACK || m->slot >= opt.depth) {
		conn_fail(c, OC_CORRUPT, "bad message");
		return;
	}
	sl = &c->slots[m->slot];
	if (!sl->busy || sl->round != m->round || !sl->need_ack) {
		conn_fail(c, OC_CORRUPT, "unexpected ACK");
		return;
	}
	if (!m->ok) {
		conn_fail(c, OC_CORRUPT, "server saw a bad checksum");
		return;
	}
	sl->need_ack = false;
	if (post_recv(c, i)) {
		conn_fail(c, OC_FAILED, "post_recv");
		return;
	}
	client_round_check(c, m->slot);
}

static void on_wc(struct worker *w, const struct ibv_wc *wc)
{
	unsigned idx = (unsigned)(wc->wr_id >> 32);
	enum wr_kind k = (enum wr_kind)((wc->wr_id >> 24) & 0xff);
	unsigned s = (unsigned)(wc->wr_id & 0xffffff);
	struct conn *c;

	if (idx >= opt.conns)
		return;
	c = &g_conns[idx];
	if (c->w != w || c->phase >= PH_FINISHED)
		return; /* a late completion of a connection torn down after a timeout */
	if (k == WK_RECV)
		c->done_recv++;
	else
		c->done_send++;
	if (wc->status != IBV_WC_SUCCESS) {
		if ((unsigned)wc->status < XF_MAX_STATUS)
			w->status_count[wc->status]++;
		if (wc->status == IBV_WC_WR_FLUSH_ERR)
			c->flushed++;
		else
			c->wc_errors++;
		if (c->first_status < 0)
			c->first_status = wc->status;
		/* Flushes after the DONE handshake are the normal end of the connection. */
		if (wc->status == IBV_WC_WR_FLUSH_ERR &&
		    (c->phase == PH_CLOSING || (opt.server && c->phase == PH_DONE_SENT)))
			return;
		conn_fail(c, OC_FAILED, "work completion error");
		return;
	}
	w->status_count[0]++;
	if (c->phase == PH_FAILED)
		return;
	switch (k) {
	case WK_RECV:
		if (opt.server)
			server_on_recv(c, s, wc->byte_len);
		else
			client_on_recv(c, s, wc->byte_len);
		break;
	case WK_WRITE:
	case WK_NOTIFY:
	case WK_DATA:
		if (s < opt.depth && c->slots[s].pending > 0) {
			c->slots[s].pending--;
			client_round_check(c, s);
		}
		break;
	case WK_READ:
		if (s < opt.depth && c->slots[s].pending > 0) {
			struct slot *sl = &c->slots[s];

			if (csum_buf(c_dst(c) + (size_t)s * opt.chunk, sl->len) != sl->csum) {
				conn_fail(c, OC_CORRUPT, "READ data checksum");
				return;
			}
			sl->pending--;
			client_round_check(c, s);
		}
		break;
	default:
		break;
	}
}

static void worker_take_incoming(struct worker *w)
{
	struct conn *in;

	pthread_mutex_lock(&w->lock);
	in = w->incoming;
	w->incoming = NULL;
	pthread_mutex_unlock(&w->lock);
	while (in) {
		struct conn *n = in->next;

		if (w->nactive == w->cap_active) {
			w->cap_active = w->cap_active ? 2 * w->cap_active : 64;
			w->active = realloc(w->active, w->cap_active * sizeof(*w->active));
			if (!w->active)
				abort();
		}
		w->active[w->nactive++] = in;
		in = n;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ibv_wc wcs[64];
	int64_t last_sweep = 0;

	while (!atomic_load(&g_workers_quit)) {
		int n, total = 0;

		worker_take_incoming(w);
		while ((n = ibv_poll_cq(w->cq, 64, wcs)) > 0) {
			for (int i = 0; i < n; i++)
				on_wc(w, &wcs[i]);
			total += n;
			if (total > 4096)
				break;
		}
		if (n < 0) {
			fprintf(stderr, "xfer: ibv_poll_cq failed\n");
			abort();
		}
		/* Drive every connection now and then (timeouts, CM flags), those with news at
		 * once. */
		if (total || mono_ms() - last_sweep >= 5) {
			unsigned j = 0;

			last_sweep = mono_ms();
			for (unsigned i = 0; i < w->nactive; i++) {
				struct conn *c = w->active[i];

				conn_drive(c);
				if (c->phase < PH_FINISHED)
					w->active[j++] = c;
			}
			w->nactive = j;
		}
		if (!total) {
			struct pollfd p = {.fd = w->ch->fd, .events = POLLIN};

			if (ibv_req_notify_cq(w->cq, 0))
				abort();
			n = ibv_poll_cq(w->cq, 64, wcs);
			for (int i = 0; i < n; i++)
				on_wc(w, &wcs[i]);
			if (n > 0)
				continue;
			if (poll(&p, 1, 5) == 1) {
				struct ibv_cq *cq;
				void *ctx;

				if (!ibv_get_cq_event(w->ch, &cq, &ctx))
					ibv_ack_cq_events(cq, 1);
			}
		}
	}
	return NULL;
}

/* ---- main thread: resources, connection manager ------------------------------------------ */

static int setup_workers(struct ibv_context *verbs)
{
	unsigned per = (opt.parallel + opt.threads - 1) / opt.threads;
	long cqe = (long)per * (3 * opt.depth + 8) + 64;

	if (g_verbs)
		return 0;
	g_verbs = verbs;
	g_pd = ibv_alloc_pd(verbs);
	if (!g_pd) {
		fprintf(stderr, "xfer: ibv_alloc_pd: %s\n", strerror(errno));
		return -1;
	}
	if (cqe > (1 << 22))
		cqe = 1 << 22;
	for (unsigned i = 0; i < opt.threads; i++) {
		struct worker *w = &g_workers[i];

		w->id = (int)i;
		pthread_mutex_init(&w->lock, NULL);
		w->ch = ibv_create_comp_channel(verbs);
		if (!w->ch) {
			fprintf(stderr, "xfer: ibv_create_comp_channel: %s\n", strerror(errno));
			return -1;
		}
		w->cq = ibv_create_cq(verbs, (int)cqe, w, w->ch, 0);
		if (!w->cq) {
			fprintf(stderr, "xfer: ibv_create_cq(%ld): %s\n", cqe, strerror(errno));
			return -1;
		}
		if (pthread_create(&w->thread, NULL, worker_main, w)) {
			fprintf(stderr, "xfer: pthread_create failed\n");
			return -1;
		}
	}
	return 0;
}

static void teardown_workers(void)
{
	atomic_store(&g_workers_quit, true);
	for (unsigned i = 0; i < opt.threads && g_verbs; i++) {
		struct worker *w = &g_workers[i];

		if (w->thread)
			pthread_join(w->thread, NULL);
		if (w->cq && ibv_destroy_cq(w->cq))
			fprintf(stderr, "xfer: ibv_destroy_cq: %s\n", strerror(errno));
		if (w->ch && ibv_destroy_comp_channel(w->ch))
			fprintf(stderr, "xfer: ibv_destroy_comp_channel: %s\n", strerror(errno));
		free(w->active);
		pthread_mutex_destroy(&w->lock);
	}
	if (g_pd && ibv_dealloc_pd(g_pd))
		fprintf(stderr, "xfer: ibv_dealloc_pd: %s\n", strerror(errno));
}

/* QP, memory and receives of a new connection; hands it to its worker. */
static int conn_prepare(struct conn *c, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr a;
	struct worker *w = &g_workers[c->idx % opt.threads];
	int access = IBV_ACCESS_LOCAL_WRITE;

	if (!g_arena_nfree) {
		fprintf(stderr, "xfer: no free memory slot\n");
		return -1;
	}
	c->arena = g_arena_free[--g_arena_nfree];
	c->mem = g_arena + (size_t)c->arena * g_arena_slot;
	c->id = id;
	c->w = w;
	c->first_status = -1;
	id->context = c;
	if (opt.server) {
		access |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
		memset(s_w(c), 0, (size_t)opt.depth * opt.chunk);
		fill(s_r(c), r_len(), mix64(c->seed ^ 0x5a5a), 0);
	}
	c->mr = ibv_reg_mr(g_pd, c->mem, g_arena_slot, access);
	if (!c->mr) {
		fprintf(stderr, "xfer: ibv_reg_mr: %s\n", strerror(errno));
		return -1;
	}
	memset(&a, 0, sizeof(a));
	a.send_cq = w->cq;
	a.recv_cq = w->cq;
	a.qp_type = IBV_QPT_RC;
	a.cap.max_send_wr = 2 * opt.depth + 4;
	a.cap.max_recv_wr = nrx();
	a.cap.max_send_sge = 2;
	a.cap.max_recv_sge = 1;
	a.cap.max_inline_data = sizeof(struct xf_msg);
	if (rdma_create_qp(id, g_pd, &a)) {
		fprintf(stderr, "xfer: rdma_create_qp: %s\n", strerror(errno));
		return -1;
	}
	for (unsigned i = 0; i < nrx(); i++)
		if (post_recv(c, i)) {
			fprintf(stderr, "xfer: ibv_post_recv failed\n");
			return -1;
		}
	c->phase = PH_SETUP;
	pthread_mutex_lock(&w->lock);
	c->next = w->incoming;
	w->incoming = c;
	pthread_mutex_unlock(&w->lock);
	return 0;
}

static void conn_teardown(struct conn *c)
{
	if (c->id && c->id->qp)
		rdma_destroy_qp(c->id);
	if (c->mr && ibv_dereg_mr(c->mr))
		fprintf(stderr, "xfer: ibv_dereg_mr: %s\n", strerror(errno));
	c->mr = NULL;
	if (c->id && rdma_destroy_id(c->id))
		fprintf(stderr, "xfer: rdma_destroy_id: %s\n", strerror(errno));
	c->id = NULL;
	if (c->mem)
		g_arena_free[g_arena_nfree++] = c->arena;
	c->mem = NULL;
	/* c->phase stays PH_FINISHED: the worker may still look at it for a stray completion */
}

static struct {
	unsigned opened, reaped, outcome[7];
	unsigned not_flushed, no_disc, disc_unprompted;
	uint64_t bytes, peer_bytes, rounds;
	int64_t first_fail_ms, last_fail_ms, last_disc_ms, max_fail_to_finish_ms;
	unsigned connected_now, connected_max;
	long rss_base, rss_warm, rss_connected, rss_end, rss_closed;
	int fds_base, fds_warm, fds_connected, fds_end, fds_closed;
	long tcp_mem_connected;
	int64_t t_all_connected_ms;
} st;

static void reap_finished(void)
{
	struct conn *l;

	pthread_mutex_lock(&g_fin_lock);
	l = g_finished;
	g_finished = NULL;
	pthread_mutex_unlock(&g_fin_lock);
	while (l) {
		struct conn *c = l;

		l = l->next;
		st.outcome[c->outcome]++;
		st.bytes += c->bytes_verified;
		st.peer_bytes += c->peer_bytes;
		st.rounds += c->rounds_done;
		if (c->disc_unprompted)
			st.disc_unprompted++;
		if (c->outcome != OC_OK && c->outcome != OC_CONNECT_FAILED &&
		    c->outcome != OC_ABORTED) {
			if (!c->disc_seen)
				st.no_disc++;
			if (!conn_drained(c))
				st.not_flushed++;
			if (!st.first_fail_ms || c->t_fail_ms < st.first_fail_ms)
				st.first_fail_ms = c->t_fail_ms;
			if (c->t_fail_ms > st.last_fail_ms)
				st.last_fail_ms = c->t_fail_ms;
			if (c->t_disc_ms > st.last_disc_ms)
				st.last_disc_ms = c->t_disc_ms;
			if (c->t_fail_ms &&
			    c->t_finish_ms - c->t_fail_ms > st.max_fail_to_finish_ms)
				st.max_fail_to_finish_ms = c->t_finish_ms - c->t_fail_ms;
		}
		if (opt.verbose || (c->outcome != OC_OK && opt.conns <= 64) ||
		    (c->outcome != OC_OK && st.outcome[c->outcome] <= 3))
			conn_report(c);
		if (c->t_start_ms && st.connected_now)
			st.connected_now--;
		conn_teardown(c);
		st.reaped++;
		/* After the first connection: the device context and its threads exist. */
		if (st.reaped == 1) {
			st.rss_warm = rss_kb();
			st.fds_warm = count_fds();
		}
		atomic_fetch_add(&g_nfinished_total, 1);
	}
}

static uint64_t total_bytes(void)
{
	uint64_t b = 0;

	for (unsigned i = 0; i < opt.threads; i++)
		b += atomic_load(&g_workers[i].bytes);
	return b;
}

static struct rdma_cm_id *g_listen;
static struct rdma_event_channel *g_ech;

static int sockaddr_of(const char *ip, unsigned port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1 ? 0 : -1;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		return inet_pton(AF_INET, ip, &s4->sin_addr) == 1 ? 0 : -1;
	}
}

static unsigned g_next_conn, g_setting_up;

static int client_open_one(void)
{
	struct sockaddr_storage dst;
	struct conn *c = &g_conns[g_next_conn];
	struct rdma_cm_id *id;

	c->idx = g_next_conn++;
	c->seed = mix64(opt.seed + c->idx);
	c->rounds_target = opt.rounds;
	c->first_status = -1;
	if (sockaddr_of(opt.addr, opt.port, &dst))
		return -1;
	if (rdma_create_id(g_ech, &id, c, RDMA_PS_TCP)) {
		fprintf(stderr, "xfer: rdma_create_id: %s\n", strerror(errno));
		return -1;
	}
	c->id = id;
	if (rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 5000)) {
		fprintf(stderr, "xfer: rdma_resolve_addr: %s\n", strerror(errno));
		return -1;
	}
	st.opened++;
	g_setting_up++;
	return 0;
}

/* A client connection that failed before it was handed over (or during). */
static void client_setup_failed(struct conn *c, int status)
{
	c->cm_status = status;
	if (c->w) {
		atomic_store_explicit(&c->connect_failed, true, memory_order_release);
	} else {
		/* never reached a worker: tear down here */
		c->outcome = OC_CONNECT_FAILED;
		c->why = "connect";
		c->t_fail_ms = wall_ms();
		c->phase = PH_FINISHED;
		pthread_mutex_lock(&g_fin_lock);
		c->next = g_finished;
		g_finished = c;
		pthread_mutex_unlock(&g_fin_lock);
	}
	if (g_setting_up)
		g_setting_up--;
}

static void handle_event(struct rdma_cm_event *e)
{
	struct rdma_cm_id *id = e->id;
	struct conn *c = id->context;
	enum rdma_cm_event_type type = e->event;
	int status = e->status;
	struct xf_offer offer;
	struct xf_hello hello;
	bool have_pd = false;

	if (e->param.conn.private_data && e->param.conn.private_data_len >= sizeof(offer)) {
		memcpy(&offer, e->param.conn.private_data, sizeof(offer));
		have_pd = true;
	}
	if (e->param.conn.private_data && e->param.conn.private_data_len >= sizeof(hello))
		memcpy(&hello, e->param.conn.private_data, sizeof(hello));
	else
		memset(&hello, 0, sizeof(hello));
	if (type == RDMA_CM_EVENT_CONNECT_REQUEST)
		c = NULL;
	rdma_ack_cm_event(e);

	switch (type) {
	case RDMA_CM_EVENT_ADDR_RESOLVED:
		if (setup_workers(id->verbs) || rdma_resolve_route(id, 5000))
			client_setup_failed(c, -errno);
		break;
	case RDMA_CM_EVENT_ROUTE_RESOLVED: {
		struct rdma_conn_param p;

		if (conn_prepare(c, id)) {
			client_setup_failed(c, -1);
			break;
		}
		hello = (struct xf_hello){XF_MAGIC, c->idx, c->seed, opt.chunk, opt.depth};
		memset(&p, 0, sizeof(p));
		p.private_data = &hello;
		p.private_data_len = sizeof(hello);
		p.initiator_depth = 8;
		p.responder_resources = 8;
		if (rdma_connect(id, &p)) {
			fprintf(stderr, "xfer: rdma_connect: %s\n", strerror(errno));
			client_setup_failed(c, -errno);
		}
		break;
	}
	case RDMA_CM_EVENT_CONNECT_REQUEST: {
		struct rdma_conn_param p;

		if (hello.magic != XF_MAGIC || hello.chunk != opt.chunk ||
		    hello.depth != opt.depth || g_next_conn >= opt.conns || !g_arena_nfree) {
			static unsigned nrej;

			if (nrej++ < 5)
				fprintf(stderr, "xfer: rejecting a connection (%s)\n",
					hello.magic != XF_MAGIC ? "no hello"
								: "parameters or count");
			rdma_reject(id, NULL, 0);
			rdma_destroy_id(id);
			break;
		}
		c = &g_conns[g_next_conn];
		c->idx = g_next_conn++;
		c->seed = hello.seed;
		st.opened++;
		if (setup_workers(id->verbs) || conn_prepare(c, id)) {
			rdma_reject(id, NULL, 0);
			c->outcome = OC_CONNECT_FAILED;
			conn_teardown(c);
			st.reaped++;
			st.outcome[OC_CONNECT_FAILED]++;
			break;
		}
		offer = (struct xf_offer){
		    .magic = XF_MAGIC,
		    .w_rkey = c->mr->rkey,
		    .w_addr = (uintptr_t)s_w(c),
		    .w_len = opt.depth * opt.chunk,
		    .r_rkey = c->mr->rkey,
		    .r_addr = (uintptr_t)s_r(c),
		    .r_len = r_len(),
		    .r_seed = mix64(c->seed ^ 0x5a5a),
		};
		memset(&p, 0, sizeof(p));
		p.private_data = &offer;
		p.private_data_len = sizeof(offer);
		p.initiator_depth = 8;
		p.responder_resources = 8;
		if (rdma_accept(id, &p)) {
			fprintf(stderr, "xfer: rdma_accept: %s\n", strerror(errno));
			c->cm_status = -errno;
			atomic_store_explicit(&c->connect_failed, true, memory_order_release);
		}
		break;
	}
	case RDMA_CM_EVENT_ESTABLISHED:
		if (!c)
			break;
		if (!opt.server) {
			if (!have_pd || offer.magic != XF_MAGIC) {
				fprintf(stderr, "xfer: no offer in the accept\n");
				client_setup_failed(c, -1);
				break;
			}
			c->offer = offer;
			if (g_setting_up)
				g_setting_up--;
		}
		st.connected_now++;
		if (st.connected_now > st.connected_max)
			st.connected_max = st.connected_now;
		atomic_store_explicit(&c->established, true, memory_order_release);
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		if (!c)
			break;
		c->t_disc_ms = wall_ms();
		atomic_store_explicit(&c->disconnected, true, memory_order_release);
		break;
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_REJECTED:
		if (!c)
			break;
		fprintf(stderr, "xfer: conn %u: %s (status %d)\n", c->idx, rdma_event_str(type),
			status);
		if (opt.server) {
			c->cm_status = status;
			atomic_store_explicit(&c->connect_failed, true, memory_order_release);
		} else {
			client_setup_failed(c, status);
		}
		break;
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
	default:
		if (opt.verbose)
			fprintf(stderr, "xfer: event %s\n", rdma_event_str(type));
		break;
	}
}

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&g_stop, true);
}

static void raise_nofile(unsigned need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return;
	if (rl.rlim_cur >= need)
		return;
	if (rl.rlim_max < need) {
		struct rlimit r2 = {need, need};

		if (!setrlimit(RLIMIT_NOFILE, &r2))
			return;
	}
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
}

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: xfer server --bind IP [--port P] [--conns N | --forever] [options]\n"
	    "       xfer client --addr IP --port P [--conns N] [options]\n"
	    "options: --parallel N --threads N --chunk BYTES --depth N --ops [wsr]+\n"
	    "         --mib N | --rounds N | --seconds S (per connection; client)\n"
	    "         --stall-timeout S --disc-timeout S --drain-timeout S --timeout S\n"
	    "         --progress-ms MS --seed N --connect-window N --verbose\n"
	    "         --pause-at ROUND --pause-seconds S (client: idle connection for a while)\n"
	    "         --abort-at ROUNDS (client: destroy QP and id with work in flight)\n"
	    "         --nofile N (RLIMIT_NOFILE, to provoke EMFILE)\n");
	exit(4);
}

/* --verbose: what the descriptors left at the end are (stderr). */
static void list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char path[300], target[256];
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		target[n < 0 ? 0 : n] = 0;
		fprintf(stderr, "xfer: fd %s -> %s\n", e->d_name, target);
	}
	closedir(d);
}

static void print_result(int64_t t_begin, bool timed_out)
{
	int64_t dt = mono_ms() - t_begin;
	uint64_t status[XF_MAX_STATUS] = {0};
	char sbuf[1024];
	size_t o = 0;

	for (unsigned i = 0; i < opt.threads; i++)
		for (int s = 0; s < XF_MAX_STATUS; s++)
			status[s] += g_workers[i].status_count[s];
	sbuf[o++] = '{';
	for (int s = 0; s < XF_MAX_STATUS; s++) {
		if (!status[s])
			continue;
		o += (size_t)snprintf(sbuf + o, sizeof(sbuf) - o, "%s\"%s\":%" PRIu64,
				      o > 1 ? "," : "", ibv_wc_status_str(s), status[s]);
	}
	snprintf(sbuf + o, sizeof(sbuf) - o, "}");
	out_line("{\"event\":\"result\",\"role\":\"%s\",\"timed_out\":%s,\"conns\":%u,"
		 "\"opened\":%u,\"reaped\":%u,\"ok\":%u,\"failed\":%u,\"stalled\":%u,"
		 "\"corrupt\":%u,\"connect_failed\":%u,\"aborted\":%u,\"not_flushed\":%u,"
		 "\"no_disconnect\":%u,"
		 "\"disc_unprompted\":%u,\"bytes_verified\":%" PRIu64 ",\"peer_bytes\":%" PRIu64
		 ",\"rounds\":%" PRIu64 ",\"elapsed_ms\":%" PRId64 ",\"mib_per_s\":%.2f,"
		 "\"conn_per_s\":%.1f,\"connected_max\":%u,\"all_connected_ms\":%" PRId64 ","
		 "\"first_fail_ms\":%" PRId64 ",\"last_fail_ms\":%" PRId64
		 ",\"last_disc_ms\":%" PRId64 ",\"max_fail_to_finish_ms\":%" PRId64 ","
		 "\"wc_status\":%s,\"rss_kb\":{\"base\":%ld,\"warm\":%ld,\"connected\":%ld,"
		 "\"end\":%ld,\"closed\":%ld},\"fds\":{\"base\":%d,\"warm\":%d,"
		 "\"connected\":%d,\"end\":%d,\"closed\":%d},"
		 "\"tcp_mem_pages_connected\":%ld,\"app_bytes_per_conn\":%zu,"
		 "\"t_end_ms\":%" PRId64 "}",
		 opt.server ? "server" : "client", timed_out ? "true" : "false", opt.conns,
		 st.opened, st.reaped, st.outcome[OC_OK], st.outcome[OC_FAILED],
		 st.outcome[OC_STALLED], st.outcome[OC_CORRUPT], st.outcome[OC_CONNECT_FAILED],
		 st.outcome[OC_ABORTED], st.not_flushed, st.no_disc, st.disc_unprompted, st.bytes,
		 st.peer_bytes, st.rounds, dt,
		 dt ? (double)st.bytes / 1048576.0 / ((double)dt / 1000.0) : 0.0,
		 dt ? (double)st.reaped * 1000.0 / (double)dt : 0.0, st.connected_max,
		 st.t_all_connected_ms, st.first_fail_ms, st.last_fail_ms, st.last_disc_ms,
		 st.max_fail_to_finish_ms, sbuf, st.rss_base, st.rss_warm, st.rss_connected,
		 st.rss_end, st.rss_closed, st.fds_base, st.fds_warm, st.fds_connected, st.fds_end,
		 st.fds_closed, st.tcp_mem_connected, g_arena_slot, wall_ms());
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"bind", required_argument, NULL, 'b'},
	    {"addr", required_argument, NULL, 'a'},
	    {"port", required_argument, NULL, 'p'},
	    {"conns", required_argument, NULL, 'n'},
	    {"parallel", required_argument, NULL, 'P'},
	    {"threads", required_argument, NULL, 'T'},
	    {"chunk", required_argument, NULL, 'c'},
	    {"depth", required_argument, NULL, 'd'},
	    {"ops", required_argument, NULL, 'o'},
	    {"mib", required_argument, NULL, 'm'},
	    {"rounds", required_argument, NULL, 'r'},
	    {"seconds", required_argument, NULL, 's'},
	    {"stall-timeout", required_argument, NULL, 'S'},
	    {"disc-timeout", required_argument, NULL, 'D'},
	    {"drain-timeout", required_argument, NULL, 'R'},
	    {"timeout", required_argument, NULL, 't'},
	    {"progress-ms", required_argument, NULL, 'g'},
	    {"seed", required_argument, NULL, 'e'},
	    {"connect-window", required_argument, NULL, 'W'},
	    {"abort-at", required_argument, NULL, 'X'},
	    {"nofile", required_argument, NULL, 'N'},
	    {"pause-at", required_argument, NULL, 'A'},
	    {"pause-seconds", required_argument, NULL, 'E'},
	    {"forever", no_argument, NULL, 'F'},
	    {"verbose", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	struct sigaction sa;
	int64_t t_begin, last_progress = 0;
	bool timed_out = false;
	int ch, rc;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "server"))
		opt.server = true;
	else if (strcmp(argv[1], "client"))
		usage();
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'b':
			opt.bind = optarg;
			break;
		case 'a':
			opt.addr = optarg;
			break;
		case 'p':
			opt.port = (unsigned)atoi(optarg);
			break;
		case 'n':
			opt.conns = (unsigned)atoi(optarg);
			break;
		case 'P':
			opt.parallel = (unsigned)atoi(optarg);
			break;
		case 'T':
			opt.threads = (unsigned)atoi(optarg);
			break;
		case 'c':
			opt.chunk = (uint32_t)atoi(optarg);
			break;
		case 'd':
			opt.depth = (uint32_t)atoi(optarg);
			break;
		case 'o':
			snprintf(opt.ops, sizeof(opt.ops), "%s", optarg);
			break;
		case 'm':
			opt.mib = strtoull(optarg, NULL, 0);
			break;
		case 'r':
			opt.rounds = strtoull(optarg, NULL, 0);
			break;
		case 's':
			opt.seconds = atof(optarg);
			break;
		case 'S':
			opt.stall_timeout = atof(optarg);
			break;
		case 'D':
			opt.disc_timeout = atof(optarg);
			break;
		case 'R':
			opt.drain_timeout = atof(optarg);
			break;
		case 't':
			opt.timeout = atof(optarg);
			break;
		case 'g':
			opt.progress_ms = (unsigned)atoi(optarg);
			break;
		case 'e':
			opt.seed = strtoull(optarg, NULL, 0);
			break;
		case 'W':
			opt.connect_window = (unsigned)atoi(optarg);
			break;
		case 'N':
			opt.nofile = (unsigned)atoi(optarg);
			break;
		case 'X':
			opt.abort_at = (uint32_t)atoi(optarg);
			break;
		case 'A':
			opt.pause_at = (uint32_t)atoi(optarg);
			break;
		case 'E':
			opt.pause_seconds = atof(optarg);
			break;
		case 'F':
			opt.forever = true;
			break;
		case 'v':
			opt.verbose = true;
			break;
		default:
			usage();
		}
	}
	if (opt.server ? !opt.bind : (!opt.addr || !opt.port))
		usage();
	if (opt.chunk < 64 || opt.chunk % 8 || opt.chunk > (1u << 24) || !opt.depth ||
	    opt.depth > 1024 || !opt.conns || !opt.threads || opt.threads > XF_MAX_THREADS ||
	    strspn(opt.ops, "wsr") != strlen(opt.ops) || !opt.ops[0] || !opt.connect_window)
		usage();
	if (!opt.parallel || opt.parallel > opt.conns)
		opt.parallel = opt.conns;
	if (opt.mib)
		opt.rounds = (opt.mib << 20) / opt.chunk;
	if (!opt.server && !opt.rounds && opt.seconds <= 0)
		opt.rounds = 64;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (opt.nofile) {
		/* --nofile: a deliberately small descriptor limit (EMFILE paths of the stack) */
		struct rlimit rl = {opt.nofile, opt.nofile};

		setrlimit(RLIMIT_NOFILE, &rl);
	} else {
		raise_nofile(2 * opt.parallel + 256);
	}

	/* All application memory up front, touched, so RSS deltas are the stack's. */
	g_conns = calloc(opt.conns, sizeof(*g_conns));
	g_arena_slot = conn_mem_size();
	g_arena = mmap(NULL, g_arena_slot * opt.parallel, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	g_arena_free = calloc(opt.parallel, sizeof(int));
	if (!g_conns || g_arena == MAP_FAILED || !g_arena_free) {
		fprintf(stderr, "xfer: out of memory\n");
		return 4;
	}
	memset(g_arena, 0, g_arena_slot * opt.parallel);
	for (unsigned i = 0; i < opt.parallel; i++)
		g_arena_free[g_arena_nfree++] = (int)(opt.parallel - 1 - i);
	for (unsigned i = 0; i < opt.conns; i++) {
		g_conns[i].slots = calloc(opt.depth, sizeof(struct slot));
		if (!g_conns[i].slots)
			return 4;
	}

	g_ech = rdma_create_event_channel();
	if (!g_ech) {
		fprintf(stderr, "xfer: rdma_create_event_channel: %s\n", strerror(errno));
		return 4;
	}
	fcntl(g_ech->fd, F_SETFL, fcntl(g_ech->fd, F_GETFL) | O_NONBLOCK);
	if (opt.server) {
		struct sockaddr_storage ss;

		if (sockaddr_of(opt.bind, opt.port, &ss) ||
		    rdma_create_id(g_ech, &g_listen, NULL, RDMA_PS_TCP) ||
		    rdma_bind_addr(g_listen, (struct sockaddr *)&ss) ||
		    rdma_listen(g_listen, 1024)) {
			fprintf(stderr, "xfer: listen on %s:%u: %s\n", opt.bind, opt.port,
				strerror(errno));
			return 4;
		}
		if (g_listen->verbs && setup_workers(g_listen->verbs))
			return 4;
		out_line("{\"event\":\"listening\",\"port\":%u,\"pid\":%d}",
			 ntohs(rdma_get_src_port(g_listen)), (int)getpid());
	}
	st.rss_base = rss_kb();
	st.fds_base = count_fds();
	t_begin = g_t0_ms = mono_ms();
	/* With all connections open at once, the clock starts when the last one is up. */
	if (opt.seconds > 0 && opt.parallel < opt.conns)
		atomic_store(&g_run_until_ms, g_t0_ms + (int64_t)(opt.seconds * 1000));

	for (;;) {
		struct pollfd p = {.fd = g_ech->fd, .events = POLLIN};
		int64_t now;

		if (!opt.server && !atomic_load(&g_stop)) {
			while (g_next_conn < opt.conns && g_setting_up < opt.connect_window &&
			       g_next_conn - st.reaped < opt.parallel &&
			       g_arena_nfree > g_setting_up)
				if (client_open_one()) {
					fprintf(stderr, "xfer: cannot open a connection\n");
					client_setup_failed(&g_conns[g_next_conn - 1], -1);
					break;
				}
		}
		if (poll(&p, 1, 2) == 1) {
			for (int k = 0; k < 256; k++) {
				struct rdma_cm_event *e;

				rc = rdma_get_cm_event(g_ech, &e);
				if (rc)
					break;
				handle_event(e);
			}
		}
		reap_finished();
		now = mono_ms();
		/* --seconds with every connection open at once: when the last one is up (or
		 * has failed to come up), the clock starts. */
		if (!opt.server && opt.seconds > 0 && !atomic_load(&g_run_until_ms) &&
		    g_next_conn == opt.conns && !g_setting_up)
			atomic_store(&g_run_until_ms, now + (int64_t)(opt.seconds * 1000));
		if (st.connected_now == opt.parallel && !st.t_all_connected_ms) {
			st.t_all_connected_ms = now - t_begin;
			if (opt.seconds > 0 && !atomic_load(&g_run_until_ms))
				atomic_store(&g_run_until_ms, now + (int64_t)(opt.seconds * 1000));
			st.rss_connected = rss_kb();
			st.fds_connected = count_fds();
			st.tcp_mem_connected = tcp_mem_pages();
		}
		if (opt.progress_ms && now - last_progress >= opt.progress_ms) {
			last_progress = now;
			out_line("{\"event\":\"progress\",\"role\":\"%s\",\"bytes\":%" PRIu64
				 ",\"connected\":%u,\"finished\":%u,\"rss_kb\":%ld,\"fds\":%d,"
				 "\"t_ms\":%" PRId64 "}",
				 opt.server ? "server" : "client", total_bytes(), st.connected_now,
				 st.reaped, rss_kb(), count_fds(), wall_ms());
		}
		if (st.reaped == opt.conns && !opt.forever)
			break;
		if (opt.server && atomic_load(&g_stop) && st.reaped == g_next_conn)
			break;
		if (!opt.server && atomic_load(&g_stop) && st.reaped == g_next_conn)
			break;
		if (now - t_begin > (int64_t)(opt.timeout * 1000)) {
			timed_out = true;
			break;
		}
	}
	st.rss_end = rss_kb();
	st.fds_end = count_fds();
	if (timed_out) {
		/* Report and leave without tearing down: something hangs. */
		for (unsigned i = 0; i < g_next_conn; i++) {
			struct conn *c = &g_conns[i];

			if (c->phase < PH_FINISHED && i < 64)
				out_line("{\"event\":\"stuck\",\"conn\":%u,\"phase\":%d,"
					 "\"posted_send\":%u,\"done_send\":%u,\"posted_recv\":%u,"
					 "\"done_recv\":%u,\"disconnected\":%d}",
					 i, c->phase, c->posted_send, c->done_send, c->posted_recv,
					 c->done_recv, (int)atomic_load(&c->disconnected));
		}
		print_result(t_begin, true);
		_exit(5);
	}
	teardown_workers();
	if (g_listen)
		rdma_destroy_id(g_listen);
	rdma_destroy_event_channel(g_ech);
	st.rss_closed = rss_kb();
	st.fds_closed = count_fds();
	if (opt.verbose)
		list_fds();
	print_result(t_begin, false);

	for (unsigned i = 0; i < opt.conns; i++)
		free(g_conns[i].slots);
	free(g_conns);
	free(g_arena_free);
	munmap(g_arena, g_arena_slot * opt.parallel);

	if (st.outcome[OC_CORRUPT])
		return 2;
	if (st.not_flushed || st.no_disc)
		return 3;
	if (st.outcome[OC_OK] != st.reaped)
		return 1;
	return 0;
}
