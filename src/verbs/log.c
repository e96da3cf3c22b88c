/* SPDX-License-Identifier: MIT */
/*
 * The library's logger, configured like rdma-core's: VERBS_LOG_LEVEL (0 none, 1 error,
 * 2 warning, 3 info, 4 debug; default 0 so unmodified tools print exactly what they print
 * with rdma-core) and VERBS_LOG_FILE (appended to; default stderr). __verbs_log is the same
 * logger under the private-ABI name providers such as libefa call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "vrb.h"

static pthread_once_t vrb_log_once = PTHREAD_ONCE_INIT;
static unsigned int vrb_log_level;
static FILE *vrb_log_fp;

static void vrb_log_init(void)
{
	const char *lvl = getenv("VERBS_LOG_LEVEL");
	const char *path = getenv("VERBS_LOG_FILE");

	if (lvl)
		vrb_log_level = (unsigned int)strtoul(lvl, NULL, 0);
	vrb_log_fp = stderr;
	if (vrb_log_level && path) {
		FILE *f = fopen(path, "ae");

		/* A file we cannot open must not silence the log: keep stderr. */
		if (f) {
			setvbuf(f, NULL, _IOLBF, 0);
			vrb_log_fp = f;
		}
	}
}

static void vrb_vlog(unsigned int level, const char *fmt, va_list ap)
{
	int saved = errno; /* callers log on error paths and then return errno */

	pthread_once(&vrb_log_once, vrb_log_init);
	if (level && level <= vrb_log_level) {
		flockfile(vrb_log_fp);
		fputs("softiwarp: ", vrb_log_fp);
		vfprintf(vrb_log_fp, fmt, ap);
		funlockfile(vrb_log_fp);
	}
	errno = saved;
}

void vrb_log(unsigned int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrb_vlog(level, fmt, ap);
	va_end(ap);
}

VRB_EXPORT void __verbs_log(struct verbs_context *ctx, uint32_t level, const char *fmt, ...)
{
	va_list ap;

	(void)ctx;
	va_start(ap, fmt);
	vrb_vlog(level, fmt, ap);
	va_end(ap);
}
