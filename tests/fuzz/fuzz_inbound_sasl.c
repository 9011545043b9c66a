/*
 * libFuzzer target for the inbound side of vks-agent (issue 15): whatever a client writes on the
 * [inbound.sasl] socket, line by line (agent/sasl.c: Dovecot auth protocol lines, base64
 * responses, PLAIN splitting), and the verifier strings the agent reads from Vault
 * (src/vks_verifier.c's strict parser; the KDF itself is not run: a parsed verifier must only
 * carry parameters inside the documented bounds). Each input ends in a parse or a clean refusal.
 */
#include "../../agent/sasl.c"
#include "vks_verifier.h"

static void one_line(const char *line, size_t len)
{
    struct ag_sasl_line l;
    bool id_known = false;
    char why[160];
    if (ag_sasl_parse(line, len, &l, &id_known, why, sizeof why) != 0) {
        if (why[0] == '\0' || strlen(why) >= sizeof why)
            abort(); /* a refusal always says why */
        return;
    }
    if (l.data != NULL && (l.data < line || l.data + l.data_len > line + len))
        abort(); /* the payload must point into the line */
    if (l.has_resp && l.data != NULL) {
        vks_secret buf;
        if (ag_sasl_b64(l.data, l.data_len, &buf, why, sizeof why) == 0) {
            size_t uo, ul, po, pl;
            if (buf.len > AG_SASL_RESP_MAX)
                abort();
            if (ag_sasl_plain_split(&buf, &uo, &ul, &po, &pl, why, sizeof why) == 0 &&
                (ul == 0 || ul > 255 || uo + ul > buf.len || po + pl != buf.len))
                abort();
            vks_secret_free(&buf);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t off = 0;
    while (off < size) {
        const char *nl = memchr(buf + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (buf + off)) : size - off;
        if (len <= AG_SASL_LINE_MAX)
            one_line(buf + off, len);
        off += len + 1;
    }
    struct vks_verifier_params p;
    unsigned char salt[VKS_VERIFIER_SALT_LEN], dk[VKS_VERIFIER_DK_LEN];
    if (vks_verifier_parse(buf, size, &p, salt, dk, NULL) == VKS_OK) {
        bool ok = p.scheme == VKS_VERIFIER_SCRYPT
                      ? p.ln >= VKS_VERIFIER_SCRYPT_LN_MIN && p.ln <= VKS_VERIFIER_SCRYPT_LN_MAX && p.r >= 1 &&
                            p.r <= VKS_VERIFIER_SCRYPT_R_MAX && p.p >= 1 && p.p <= VKS_VERIFIER_SCRYPT_P_MAX
                      : p.iterations >= VKS_VERIFIER_PBKDF2_MIN && p.iterations <= VKS_VERIFIER_PBKDF2_MAX;
        if (!ok || size > VKS_VERIFIER_MAX)
            abort();
    }
    char s[80];
    size_t k = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, buf, k);
    s[k] = '\0';
    (void)vks_verifier_params_parse(s, "--verifier", &p, NULL);
    return 0;
}
