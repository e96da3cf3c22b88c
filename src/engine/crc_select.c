/* SPDX-License-Identifier: MIT */
/*
 * Which CRC32c the engine computes with. The core's own (SSE4.2 crc32 instruction, three
 * interleaved chains) runs at ~26 GB/s here; ISA-L's crc32_iscsi (PCLMULQDQ folding) at ~52
 * (tools/crc32c-bench.c). With CRC on, that pass is most of the per-byte cost beyond TCP's
 * copy, so libisal is used when it is installed: loaded at run time, so it stays optional and
 * the drop-in libraries gain no hard dependency. SIW_CRC32C=builtin keeps the core's, =sw
 * forces the portable table (tests).
 */
#include "priv.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

typedef unsigned int (*isal_crc_fn)(unsigned char *buf, int len, unsigned int init);
static isal_crc_fn isal_crc32_iscsi;

/* ISA-L takes an int length: longer buffers go in pieces. Same chaining convention as ours. */
static uint32_t crc_isal(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > (size_t)INT_MAX / 2) {
		crc = isal_crc32_iscsi((unsigned char *)p, INT_MAX / 2, crc);
		p += INT_MAX / 2;
		len -= INT_MAX / 2;
	}
	return len ? isal_crc32_iscsi((unsigned char *)p, (int)len, crc) : crc;
}

__attribute__((constructor)) static void crc_select(void)
{
	const char *e = getenv("SIW_CRC32C");
	void *h;

	if (e && !strcmp(e, "sw")) {
		siw_crc32c_force_sw(1);
		return;
	}
	if (e && !strcmp(e, "builtin"))
		return;
	h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	isal_crc32_iscsi = (isal_crc_fn)(uintptr_t)dlsym(h, "crc32_iscsi");
	if (!isal_crc32_iscsi || siw_crc32c_use(crc_isal, "isa-l") < 0) {
		isal_crc32_iscsi = NULL;
		dlclose(h);
	}
	/* Kept loaded for the life of the process otherwise. */
}
