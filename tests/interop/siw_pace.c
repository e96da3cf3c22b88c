// SPDX-License-Identifier: MIT
/*
 * siw_pace.so - LD_PRELOAD shim that slows down the *active* side of rdma_cm connection setup
 * a little, for host clients (softiwarp) talking to a server in the TCG-emulated interop guest.
 *
 * Two timing races make such runs fail without pacing, neither of them softiwarp's:
 *
 *  - kernel siw accept race: siw_accept() sends the MPA Reply and only then installs the
 *    QP's socket callbacks (siw_qp_socket_assoc). A first FPDU that arrives in between is
 *    left unread in the socket until some later segment arrives, so a client whose first
 *    message waits for an answer stalls. A native-speed initiator hits this window against
 *    the emulated guest in about one connection in four (README.md, "kernel siw findings").
 *  - perftest -R re-listen race: the perftest server accepts its control connection, destroys
 *    the listener and only re-listens for the test connection after more setup; a fast
 *    client connects in between and is reset.
 *  - kernel siw close race: when the peer closes right after receiving the last SEND of an
 *    emulated kernel siw QP, kernel siw may complete that SEND with LOC_QP_OP_ERR although
 *    every byte of it was delivered (perftest's final handshake then fails on the guest).
 *
 * Environment (milliseconds, 0 = off):
 *   SIW_PACE_CONNECT_MS      sleep before every rdma_connect()
 *   SIW_PACE_ESTABLISHED_MS  sleep before rdma_get_cm_event() hands out ESTABLISHED for an
 *                            id that called rdma_connect() (so the application's first send
 *                            leaves that much later)
 *   SIW_PACE_CLOSE_MS        sleep once, at the first rdma_disconnect(), rdma_destroy_qp(),
 *                            rdma_destroy_id() or ibv_destroy_qp() of the process (so its
 *                            connections close that much later)
 * It changes nothing else: the protocol, the wire and the programs stay as they are.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <rdma/rdma_cma.h>

#define MAX_ACTIVE 256

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rdma_cm_id *active[MAX_ACTIVE];
static int nactive;

static long env_ms(const char *name)
{
	const char *s = getenv(name);
	long v = s ? strtol(s, NULL, 10) : 0;

	return v > 0 && v < 60000 ? v : 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts))
		;
}

static int is_active(struct rdma_cm_id *id)
{
	int found = 0;

	pthread_mutex_lock(&lock);
	for (int i = 0; i < nactive; i++)
		if (active[i] == id)
			found = 1;
	pthread_mutex_unlock(&lock);
	return found;
}

static void pace_close(void)
{
	static int done;
	long ms = env_ms("SIW_PACE_CLOSE_MS");
	int first;

	pthread_mutex_lock(&lock);
	first = !done;
	done = 1;
	pthread_mutex_unlock(&lock);
	if (first && ms)
		sleep_ms(ms);
}

typedef int (*id_fn)(struct rdma_cm_id *);
typedef void (*id_void_fn)(struct rdma_cm_id *);
typedef int (*qp_fn)(struct ibv_qp *);

int rdma_disconnect(struct rdma_cm_id *id)
{
	static id_fn real;

	if (!real)
		real = (id_fn)dlsym(RTLD_NEXT, "rdma_disconnect");
	pace_close();
	return real(id);
}

void rdma_destroy_qp(struct rdma_cm_id *id)
{
	static id_void_fn real;

	if (!real)
		real = (id_void_fn)dlsym(RTLD_NEXT, "rdma_destroy_qp");
	pace_close();
	real(id);
}

int rdma_destroy_id(struct rdma_cm_id *id)
{
	static id_fn real;

	if (!real)
		real = (id_fn)dlsym(RTLD_NEXT, "rdma_destroy_id");
	pace_close();
	return real(id);
}

int ibv_destroy_qp(struct ibv_qp *qp)
{
	static qp_fn real;

	if (!real)
		real = (qp_fn)dlsym(RTLD_NEXT, "ibv_destroy_qp");
	pace_close();
	return real(qp);
}

int rdma_connect(struct rdma_cm_id *id, struct rdma_conn_param *conn_param)
{
	static int (*real)(struct rdma_cm_id *, struct rdma_conn_param *);
	long ms = env_ms("SIW_PACE_CONNECT_MS");

	if (!real)
		real = (int (*)(struct rdma_cm_id *, struct rdma_conn_param *))dlsym(RTLD_NEXT,
										   "rdma_connect");
	if (!is_active(id)) {
		pthread_mutex_lock(&lock);
		if (nactive < MAX_ACTIVE)
			active[nactive++] = id;
		pthread_mutex_unlock(&lock);
	}
	if (ms)
		sleep_ms(ms);
	return real(id, conn_param);
}

int rdma_get_cm_event(struct rdma_event_channel *channel, struct rdma_cm_event **event)
{
	static int (*real)(struct rdma_event_channel *, struct rdma_cm_event **);
	long ms = env_ms("SIW_PACE_ESTABLISHED_MS");
	int r;

	if (!real)
		real = (int (*)(struct rdma_event_channel *, struct rdma_cm_event **))dlsym(
			RTLD_NEXT, "rdma_get_cm_event");
	r = real(channel, event);
	if (!r && ms && (*event)->event == RDMA_CM_EVENT_ESTABLISHED && is_active((*event)->id))
		sleep_ms(ms);
	return r;
}
