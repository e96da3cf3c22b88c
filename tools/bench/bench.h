/* SPDX-License-Identifier: MIT */
/*
 * siw-bench: softiwarp's RDMA WRITE / READ / SEND throughput and latency next to plain TCP on
 * loopback, in one invocation (see main.c for the process model and README-style help).
 *
 * Files:
 *	main.c		options, the client/server processes, the row loop, watchdog
 *	util.c		clocks, CPU time, data patterns, the control connection, errors, facts
 *	tcp.c		the TCP half (both roles): blocking send/recv stream and ping-pong
 *	siw.c		the softiwarp half (both roles): rdma_cm, verbs, credits, rows
 *	report.c	table, CSV, JSON, gnuplot
 */
#ifndef SIW_BENCH_H
#define SIW_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BENCH_MAX_SIZES  64
#define BENCH_MAX_QPS    256
#define BENCH_MAX_SIZE   (1u << 30) /* one message; an SGE length is 32 bits */
#define BENCH_MAX_DEPTH  4096
#define BENCH_BW_CAP     10000000ull /* messages per bandwidth row */
#define BENCH_LAT_CAP    1000000ull  /* timed iterations per latency row */
#define BENCH_LAT_WARMUP 16          /* untimed iterations before a latency row */
#define BENCH_TCP_REQ    8           /* bytes of the TCP "READ" request */
#define BENCH_ORD        16          /* requested ORD/IRD (clamped to the device) */
#define BENCH_FINAL_TAG  0xff        /* ping-pong: last byte of the message ending a row */

enum bench_op { OP_WRITE, OP_READ, OP_SEND, OP_COUNT };
enum bench_mode { MODE_BW, MODE_LAT };
enum bench_transport { TR_SIW, TR_TCP };

extern const char *const bench_op_name[OP_COUNT];

struct bench_opts {
	size_t sizes[BENCH_MAX_SIZES];
	int nsizes;
	int ops[OP_COUNT]; /* in the order given */
	int nops;
	bool bw, lat;
	int depth;
	int qps;
	unsigned inline_max;
	bool crc;
	bool events;
	bool tcp_only;
	bool short_mode;
	double time;    /* seconds per measurement */
	double timeout; /* seconds any single wait may take beyond the row time */
	const char *csv, *json, *plot;
	int port;   /* 0: ephemeral ports; else control P, rdma_cm P+1, TCP data P+2 */
	bool quiet; /* no progress line */
};

/* ---- results ---------------------------------------------------------------------------- */

struct bw_result {
	bool done;
	double gbps;     /* 1e9 bytes per second */
	double cpu_ns_b; /* user+sys CPU of both processes per byte, ns */
	uint64_t msgs;
	double secs;
};

struct lat_result {
	bool done;
	double med_us, p99_us;
	uint64_t iters;
};

struct bench_row {
	enum bench_op op;
	size_t size;
	struct bw_result siw_bw, tcp_bw;
	struct lat_result siw_lat, tcp_lat;
};

/* ---- util.c ----------------------------------------------------------------------------- */

int64_t now_ns(void);
int64_t cpu_ns(void); /* user + system time of this process, all threads */
/* ms until deadline (>= 0), capped at cap_ms. */
int ms_left(int64_t deadline, int cap_ms);
/* Fills buf with a position-dependent pattern of seed; check_pattern returns the first
 * offset that differs, or -1. */
void fill_pattern(void *buf, size_t len, uint64_t seed);
ssize_t check_pattern(const void *buf, size_t len, uint64_t seed);
uint64_t seed_next(void);

/* Errors: the first message wins until err_clear(). err() returns -1. */
int err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int err_errno(const char *what);
const char *err_text(void);
bool err_isset(void);
void err_clear(void);

/* The sorted-sample statistics of a latency row. */
void lat_stats(int64_t *ns, size_t n, double scale, struct lat_result *r);

/* Sockets (loopback). */
/* The server's IPv4 address, host order (--addr; default 127.0.0.1): every listen and
 * connect of both processes, TCP and rdma_cm. */
extern uint32_t bench_addr;
int tcp_listen_lo(int port, int *bound_port);
int tcp_connect_lo(int port, double timeout);
int tcp_accept_timeout(int lfd, double timeout);
int sock_set_timeouts(int fd, double timeout);
int sock_nodelay(int fd);
/* Whole-buffer blocking I/O. recv_full returns 1 (got len), 0 (EOF before any byte) or -1. */
int send_full(int fd, const void *buf, size_t len);
int recv_full(int fd, void *buf, size_t len);

/* ---- control protocol ------------------------------------------------------------------- */

enum ctl_type {
	CTL_ANY = 0,
	CTL_SIW_SETUP = 1, /* C->S: start the softiwarp side (qps, depth, inline, sizes, events) */
	CTL_SIW_LISTEN,    /* S->C: rdma_cm port, server memory (addr, rkey), granted inline */
	CTL_SIW_KEYS,      /* C->S: client memory (addr, rkey); S->C when all QPs are up */
	CTL_ROW,           /* C->S: one measurement */
	CTL_READY,         /* S->C: prepared */
	CTL_END,           /* C->S: the client side of the measurement is over */
	CTL_RESULT,        /* S->C: the server side is over */
	CTL_QUIT,          /* C->S: tear down and exit */
	CTL_BYE,           /* S->C */
	CTL_ERROR,         /* either way: the sender failed; text says why */
};

#define CTL_MAGIC 0x53574243u /* "SWBC" */

struct ctl_msg {
	uint32_t magic;
	uint32_t type;
	uint32_t transport, op, mode; /* ROW */
	uint32_t qps, depth, inline_max, events;
	uint32_t port;
	uint32_t ok;
	uint32_t rkey;
	uint64_t addr;
	uint64_t size, max_size;
	uint64_t seed_c, seed_s; /* patterns of the client's and the server's data */
	uint64_t count;          /* END (SEND rows): SENDs posted so far; RESULT: messages */
	int64_t time_ns;         /* ROW: measurement time */
	int64_t t_start, t_end;  /* CLOCK_MONOTONIC (shared by both processes) */
	int64_t cpu_ns;          /* RESULT: the server's CPU time during the row */
	char text[200];
};

void ctl_init(struct ctl_msg *m, enum ctl_type type);
int ctl_send(int fd, const struct ctl_msg *m);
/* Waits up to timeout seconds; a CTL_ERROR from the peer or another type than want (0: any)
 * fails. */
int ctl_recv(int fd, struct ctl_msg *m, enum ctl_type want, double timeout);
/* Tells the peer why we fail (best effort). */
void ctl_send_error(int fd, const char *text);

/* ---- machine facts ---------------------------------------------------------------------- */

struct machine {
	char cpu[128];
	int cores;
	char kernel[128];
};
void machine_facts(struct machine *m);

/* ---- tcp.c ------------------------------------------------------------------------------ */

struct tcp_ctx;
struct tcp_ctx *tcp_ctx_new(size_t max_size, const struct bench_opts *o);
void tcp_ctx_free(struct tcp_ctx *t);
/* Client: one bandwidth or latency measurement over a fresh TCP connection. */
int tcp_client_bw(struct tcp_ctx *t, int ctl, int data_port, enum bench_op op, size_t size,
		  struct bw_result *r);
int tcp_client_lat(struct tcp_ctx *t, int ctl, int data_port, enum bench_op op, size_t size,
		   struct lat_result *r);
/* Server: runs the ROW message m (transport TCP) on a connection accepted from lfd. */
int tcp_server_row(struct tcp_ctx *t, int ctl, int lfd, const struct ctl_msg *m);

/* ---- siw.c ------------------------------------------------------------------------------ */

struct siw_info {
	char device[64];
	char libverbs[256]; /* path of the libibverbs.so.1 actually loaded */
	int inline_max;     /* granted */
	int ord;
	int sq_depth, rq_depth;
};

struct siw;
/* Client: starts the server side, connects o->qps QPs. */
struct siw *siw_client_setup(int ctl, const struct bench_opts *o, size_t max_size,
			     struct siw_info *info);
int siw_client_bw(struct siw *s, int ctl, enum bench_op op, size_t size, struct bw_result *r);
int siw_client_lat(struct siw *s, int ctl, enum bench_op op, size_t size, struct lat_result *r);
/* Server: answers CTL_SIW_SETUP, then ROW messages (transport SIW). */
struct siw *siw_server_setup(int ctl, const struct ctl_msg *m, const struct bench_opts *o);
int siw_server_row(struct siw *s, int ctl, const struct ctl_msg *m);
/* Both: disconnect, wait for the ends, free everything. NULL is fine. */
int siw_teardown(struct siw *s);

/* ---- report.c --------------------------------------------------------------------------- */

struct report {
	const struct bench_opts *o;
	struct machine mach;
	bool have_siw;
	struct siw_info siw;
	struct bench_row *rows;
	int nrows;
	bool failed;
	char failure[256];
};

void report_header(FILE *f, const struct report *rep);
void report_row(FILE *f, const struct report *rep, const struct bench_row *row);
int report_csv(const struct report *rep, const char *path);
int report_json(const struct report *rep, const char *path);
int report_plot(const struct report *rep, const char *path);
/* "8", "2K", "4M" */
const char *size_str(size_t size, char *buf, size_t len);

#endif
