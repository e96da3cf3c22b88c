/* SPDX-License-Identifier: MIT */
/*
 * Where the status sockets live (shared by src/engine/stat.c and tools/siw-stat.c): one per
 * process that has a softiwarp context open, <dir>/<pid>.sock, in a per-user directory of mode
 * 0700:
 *
 *	$SIW_STAT_DIR				if set (tests; both sides must agree)
 *	$XDG_RUNTIME_DIR/softiwarp		if XDG_RUNTIME_DIR is an absolute path
 *	/tmp/softiwarp-<uid>			otherwise
 *
 * siw-stat looks in the last two when SIW_STAT_DIR is unset, so a process started without
 * XDG_RUNTIME_DIR (a service, sudo -u) is found from a login shell as well.
 */
#ifndef SIW_STAT_PATH_H
#define SIW_STAT_PATH_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIW_STAT_SUFFIX  ".sock"
#define SIW_STAT_VERSION 1 /* "siw_stat" in the document: bumped on incompatible changes */

/* Candidate directories, most specific first: fills up to 2 entries; returns the count. */
static inline int siw_stat_dirs(char dirs[][256])
{
	const char *d = getenv("SIW_STAT_DIR");
	const char *x = getenv("XDG_RUNTIME_DIR");
	int n = 0, r;

	if (d && *d) {
		r = snprintf(dirs[0], 256, "%s", d);
		return r > 0 && r < 256 ? 1 : 0;
	}
	if (x && x[0] == '/') {
		r = snprintf(dirs[n], 256, "%s/softiwarp", x);
		if (r > 0 && r < 256)
			n++;
	}
	r = snprintf(dirs[n], 256, "/tmp/softiwarp-%u", (unsigned)geteuid());
	if (r > 0 && r < 256)
		n++;
	return n;
}

/* Is dir a real directory of ours that nobody else may enter? 0 or an errno. */
static inline int siw_stat_dir_check(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) < 0)
		return errno;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
		return EPERM;
	return 0;
}

#endif
