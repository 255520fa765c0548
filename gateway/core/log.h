/* log.h -- one line per event on stderr: "<ts> <level> <event> key=value ...". */
#ifndef GG_LOG_H
#define GG_LOG_H

#define GG_LOG_ERROR 0
#define GG_LOG_WARN  1
#define GG_LOG_INFO  2
#define GG_LOG_DEBUG 3

typedef struct gg_logger {
    int level; /* lines above this level are dropped before formatting */
    int fd;
} gg_logger;

/* Parse "error", "warn", "info", "debug". Returns the level or -1. */
int gg_log_level_parse(const char *name);

/* Write one line. fmt formats the key=value part (may be NULL), printf-style. Every %s
 * argument is escaped, so that no value can end the line or fake a key: `\n`, `\r`, `\t`,
 * `\\`, other control bytes and bytes that are not UTF-8 as `\xNN` (valid UTF-8 stays as it
 * is); after a `"` in fmt (`reason="%s"`) quotes become `\"`; after a `=` (`method=%s`) a
 * value that is not one plain word (empty, a space, `"`, `=`, `\`, non-ASCII) is written in
 * quotes, escaped. Elsewhere (a policy's free-text message) quotes are kept. The event name
 * is escaped like a key=value value. */
void gg_log_write(const gg_logger *lg, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The level test comes first so disabled lines cost one comparison, not a format. */
#define gg_log(lg, lvl, event, ...)                                                               \
    do {                                                                                          \
        if ((lvl) <= (lg)->level) gg_log_write((lg), (lvl), (event), __VA_ARGS__);                \
    } while (0)

/* What the process as a whole does (ready, reloaded, stopped): labelled info, but written at the
 * default level too, so that an operator sees each start and reload without asking for info
 * (nginx's notice). Only log_level = "error" hides them. */
#define gg_log_notice(lg, event, ...)                                                             \
    do {                                                                                          \
        if ((lg)->level >= GG_LOG_WARN) gg_log_write((lg), GG_LOG_INFO, (event), __VA_ARGS__);    \
    } while (0)

#endif
