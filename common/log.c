#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <syslog.h>
#include <unistd.h>

static const char *log_progname = "hashi";
static enum log_level log_lvl = LOGL_INFO;
static int log_facility = LOG_USER;
static bool log_stderr = true;
static bool log_opened;
static char log_prefix[256];

static const struct {
	const char *name;
	enum log_level level;
} level_names[] = {
	{ "QUIET", LOGL_QUIET }, { "FATAL", LOGL_FATAL }, { "ERROR", LOGL_ERROR },
	{ "INFO", LOGL_INFO }, { "VERBOSE", LOGL_VERBOSE }, { "DEBUG", LOGL_DEBUG1 },
	{ "DEBUG1", LOGL_DEBUG1 }, { "DEBUG2", LOGL_DEBUG2 }, { "DEBUG3", LOGL_DEBUG3 },
};

static const struct {
	const char *name;
	int facility;
} facility_names[] = {
	{ "DAEMON", LOG_DAEMON }, { "USER", LOG_USER }, { "AUTH", LOG_AUTH },
	{ "AUTHPRIV", LOG_AUTHPRIV }, { "LOCAL0", LOG_LOCAL0 }, { "LOCAL1", LOG_LOCAL1 },
	{ "LOCAL2", LOG_LOCAL2 }, { "LOCAL3", LOG_LOCAL3 }, { "LOCAL4", LOG_LOCAL4 },
	{ "LOCAL5", LOG_LOCAL5 }, { "LOCAL6", LOG_LOCAL6 }, { "LOCAL7", LOG_LOCAL7 },
};

enum log_level log_level_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (name && strcasecmp(name, level_names[i].name) == 0)
			return level_names[i].level;
	return LOGL_NOT_SET;
}

int log_facility_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof(facility_names) / sizeof(facility_names[0]); i++)
		if (name && strcasecmp(name, facility_names[i].name) == 0)
			return facility_names[i].facility;
	return -1;
}

void log_init(const char *progname, enum log_level level, int facility, bool to_stderr)
{
	const char *slash = progname ? strrchr(progname, '/') : NULL;
	log_progname = slash ? slash + 1 : (progname ? progname : "hashi");
	log_lvl = level;
	log_facility = facility;
	log_stderr = to_stderr;
	if (log_opened) {
		closelog();
		log_opened = false;
	}
}

void log_set_prefix(const char *prefix)
{
	if (prefix)
		snprintf(log_prefix, sizeof(log_prefix), "%s: ", prefix);
	else
		log_prefix[0] = '\0';
}

enum log_level log_get_level(void)
{
	return log_lvl;
}

bool log_enabled(enum log_level level)
{
	return level <= log_lvl && level != LOGL_QUIET;
}

static void log_write(enum log_level level, const char *fmt, va_list ap)
{
	char msg[1024], line[1400];
	const char *txt = NULL;
	int pri = LOG_INFO;

	switch (level) {
	case LOGL_FATAL: pri = LOG_CRIT; break;
	case LOGL_ERROR: pri = LOG_ERR; break;
	case LOGL_INFO:
	case LOGL_VERBOSE: pri = LOG_INFO; break;
	case LOGL_DEBUG1: txt = "debug1"; pri = LOG_DEBUG; break;
	case LOGL_DEBUG2: txt = "debug2"; pri = LOG_DEBUG; break;
	case LOGL_DEBUG3: txt = "debug3"; pri = LOG_DEBUG; break;
	default: break;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Never let control characters from the wire reach a log line raw. */
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	snprintf(line, sizeof(line), "%s%s%s%s", log_prefix, txt ? txt : "", txt ? ": " : "", msg);
	if (log_stderr) {
		fprintf(stderr, "%s\r\n", line);
		fflush(stderr);
	} else {
		if (!log_opened) {
			openlog(log_progname, LOG_PID, log_facility);
			log_opened = true;
		}
		syslog(pri, "%.500s", line);
	}
}

void log_open_now(void)
{
	if (!log_stderr && !log_opened) {
		openlog(log_progname, LOG_PID | LOG_NDELAY, log_facility);
		log_opened = true;
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	va_list ap;
	va_start(ap, fmt);
	log_write(level, fmt, ap);
	va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (log_enabled(LOGL_FATAL))
		log_write(LOGL_FATAL, fmt, ap);
	va_end(ap);
	/* A fatal error is also said on stderr when the log goes elsewhere
	 * (sshd passes a subsystem's stderr on to the client). */
	if (!log_stderr || !log_enabled(LOGL_FATAL)) {
		char msg[1024];
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		fprintf(stderr, "%s: %s\n", log_progname, msg);
	}
	exit(255);
}

static pthread_mutex_t progress_lock = PTHREAD_MUTEX_INITIALIZER;
static char progress_text[256];
static unsigned progress_seq;

void log_progress(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&progress_lock);
	memcpy(progress_text, buf, sizeof(buf));
	progress_seq++;
	pthread_mutex_unlock(&progress_lock);
	log_debug("%s", buf);
}

unsigned log_progress_get(char *buf, size_t size)
{
	pthread_mutex_lock(&progress_lock);
	snprintf(buf, size, "%s", progress_text);
	unsigned seq = progress_seq;
	pthread_mutex_unlock(&progress_lock);
	return seq;
}
