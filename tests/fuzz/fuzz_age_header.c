/*
 * libFuzzer target: the age header parser, then a full open (identity and passphrase) of the same
 * bytes. Invariants: no crash, no leak, no plaintext on failure; a parsed header ends inside the
 * input, its MAC coverage ends before its end; opening arbitrary bytes never succeeds unless the
 * input is a real age file for the fixed identity (the fuzzer cannot forge a MAC).
 *
 * Input: byte 0 bit 0 picks identity (0) or passphrase (1); the rest is the file.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_age.h"
#include "vks_secmem.h"

static struct vks_age_identities ids;
static vks_secret pass;

static void setup(void)
{
    static const char id[] = "AGE-SECRET-KEY-1M2Q2L4ED23WDLFQZ36FD7PJS8UQ7NUM0MQ555TTQTX40DWJ9P60QEMST9Z";
    struct vks_err e;
    if (vks_age_identities_parse((const unsigned char *)id, sizeof id - 1, "fuzz", &ids, &e) != VKS_OK ||
        vks_secret_dup("age-test-passphrase-4f1e", 24, &pass, &e) != VKS_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1)
        return 0;
    const unsigned char *f = data + 1;
    size_t n = size - 1;
    static struct vks_age_header h;
    struct vks_err e;
    if (vks_age_header_parse(f, n, &h, &e) == VKS_OK) {
        if (h.len > n || h.mac_covered >= h.len || h.nstanzas == 0 || h.nstanzas > VKS_AGE_STANZAS_MAX)
            abort();
        for (size_t i = 0; i < h.nstanzas; i++)
            for (size_t a = 0; a < h.stanzas[i].nargs; a++)
                if (h.stanzas[i].args[a].off + h.stanzas[i].args[a].len > h.len)
                    abort();
    }
    /* a low work factor cap keeps scrypt cheap under the fuzzer */
    struct vks_age_key k = { (data[0] & 1) ? NULL : &ids, (data[0] & 1) ? &pass : NULL, 8 };
    vks_scratch out;
    if (vks_age_open(f, n, &k, &out, &e) == VKS_OK)
        vks_scratch_close(&out);
    else if (out.data != NULL)
        abort();
    return 0;
}
