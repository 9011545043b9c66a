/*
 * libFuzzer target for the SMTP reply reader of the core's AUTH probe (src/vks_smtp.c, used by
 * vks-policy's smtp.check_auth and the rotation test step): a relay, or whoever
 * sits between us and it, controls every byte we parse before and after STARTTLS.
 * The input is what the server sends; up to 8 replies are read from a socketpair and their
 * EHLO keywords searched. Reading must end with a reply or a clean error, never overrun.
 */
#include "../../src/vks_smtp.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 60000)
        return 0; /* stays below the socket buffer: the write below never blocks */
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    if (size > 0 && write(sv[1], data, size) != (ssize_t)size)
        abort();
    close(sv[1]);
    static const struct vks_smtp_opts o = { .host = "fuzz", .port = 25, .timeout_ms = 5000 };
    struct conn c;
    memset(&c, 0, sizeof c);
    c.fd = sv[0];
    c.o = &o;
    c.deadline = now_ms() + o.timeout_ms;
    c.transcript = malloc(TRANSCRIPT_MAX);
    if (c.transcript == NULL)
        abort();
    c.transcript[0] = '\0';
    struct vks_smtp_result r;
    memset(&r, 0, sizeof r);
    r.stage = "fuzz";
    char caps[4096];
    for (int i = 0; i < 8; i++) {
        int code = 0;
        if (!read_reply(&c, &code, &r, caps, sizeof caps))
            break;
        if (code < 200 || code > 599 || strlen(r.reply) >= sizeof r.reply)
            abort();
        (void)has_cap(caps, "STARTTLS");
        (void)has_cap(caps, "AUTH");
    }
    if (strlen(c.transcript) >= TRANSCRIPT_MAX)
        abort();
    close(sv[0]);
    free(c.transcript);
    return 0;
}
