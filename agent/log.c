/* vks-agent log lines: "vks-agent: LEVEL: message" on stderr (journald adds the time). Control
 * bytes in a message (e.g. from a client's key) become '?', so one event is one line. Callers never
 * pass a secret. Thread-safe (one fprintf per line). */
#include <stdarg.h>
#include <stdio.h>

#include "agent.h"

void ag_log(const char *level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    fprintf(stderr, AG_NAME ": %s: %s\n", level, line);
}
