#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "fuzz-common.h"

/* A UB report ends the run (the libraries are built recoverable). */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

/* The code under test may log through syslog() (the server logs everything
 * at LOGL_DEBUG3 there). Format each line, so the sanitizers check every
 * argument, and drop it: glibc's syslog() would try to connect to /dev/log
 * for every line (which tripled the time per input in the jail). */
void syslog(int pri, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	(void)pri;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
}
