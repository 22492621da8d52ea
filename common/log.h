/* One logger for both programs: OpenSSH's levels and facilities, to syslog
 * or stderr, in OpenSSH's style. */
#ifndef HASHI_LOG_H
#define HASHI_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOGL_NOT_SET = -1,
	LOGL_QUIET = 0,
	LOGL_FATAL,
	LOGL_ERROR,
	LOGL_INFO,
	LOGL_VERBOSE,
	LOGL_DEBUG1,
	LOGL_DEBUG2,
	LOGL_DEBUG3,
};

/* facility is a syslog LOG_* facility value. */
void log_init(const char *progname, enum log_level level, int facility, bool to_stderr);
/* Prefix every line with this (e.g. the mount point); NULL for none. */
void log_set_prefix(const char *prefix);
enum log_level log_get_level(void);
/* "QUIET", "INFO", "DEBUG2" ... case-insensitive; LOGL_NOT_SET if unknown. */
enum log_level log_level_from_name(const char *name);
/* "DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0".."LOCAL7"; -1 if unknown. */
int log_facility_from_name(const char *name);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_fatal(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#define log_error(...)   log_msg(LOGL_ERROR, __VA_ARGS__)
#define log_info(...)    log_msg(LOGL_INFO, __VA_ARGS__)
#define log_verbose(...) log_msg(LOGL_VERBOSE, __VA_ARGS__)
#define log_debug(...)   log_msg(LOGL_DEBUG1, __VA_ARGS__)
#define log_debug2(...)  log_msg(LOGL_DEBUG2, __VA_ARGS__)
#define log_debug3(...)  log_msg(LOGL_DEBUG3, __VA_ARGS__)
/* Progress of a long step ("connecting to host:22", "authenticating"): the
 * latest is kept for whoever shows progress (log_progress_get), and logged
 * at debug level. */
void log_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Copy the latest progress text into buf; returns a counter that changes
 * with every new step. */
unsigned log_progress_get(char *buf, size_t size);

/* Connect to syslog now (when logging there), not at the first message:
 * before a sandbox that forbids making sockets. */
void log_open_now(void);

/* True when a message at this level would be written (skip costly formatting). */
bool log_enabled(enum log_level level);

#endif
