/*
 * vks-agent wire formats, pure functions (no I/O, no state), unit-tested in tests/unit/test_agent.c.
 *
 * socketmap (Postfix socketmap_table(5)): requests and replies are netstrings "<len>:<bytes>,";
 *   a request is "<map> <key>"; replies "OK <data>", "NOTFOUND ", "TEMP <reason>", "PERM <reason>".
 * exim (${readsocket}): one request "<item> <host>" (item: user, pass, plain), optionally ended
 *   by a newline, then EOF (Exim half-closes); the reply is the value alone, no newline.
 * Thread-safety: reentrant. Ownership: outputs point into the caller's buffer.
 */
#ifndef VKS_AGENT_PROTO_H
#define VKS_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>

enum ag_parse { AG_PARSE_MORE = 0, AG_PARSE_OK, AG_PARSE_ERROR };

/*
 * Parses one netstring at the start of buf[0..len). AG_PARSE_OK: *payload and *plen are the content
 * and *consumed the bytes of the whole netstring. AG_PARSE_MORE: incomplete (the caller reads
 * more). AG_PARSE_ERROR: *why says what is wrong (bad length, longer than max, missing ',').
 */
enum ag_parse ag_netstring_parse(const char *buf, size_t len, size_t max, size_t *consumed,
                                 const char **payload, size_t *plen, const char **why);

/* Writes the netstring of "<word> <reason>" (reason may be NULL/empty; control bytes in it become
 * '?'), truncating reason to fit. Returns the bytes written (0 when n is too small). */
size_t ag_netstring_reply(char *out, size_t n, const char *word, const char *reason);

/* Splits a socketmap request into map name and key (at the first space). False when there is
 * no space, the name is empty, or the key holds NUL/control bytes. */
bool ag_socketmap_split(const char *p, size_t n, const char **name, size_t *nl, const char **key,
                        size_t *kl);

/* Parses an Exim request (without the trailing newline, if any). item is "user", "pass" or
 * "plain". False with *why when malformed. */
bool ag_exim_request(const char *p, size_t n, char item[8], const char **host, size_t *hl,
                     const char **why);

#endif
