/*
 * libFuzzer target: the ENC: envelope parser and decrypt (both formats), the wipe-on-failure
 * promise, and encrypt/decrypt round trips of arbitrary plaintext at arbitrary places.
 *
 * Input: byte 0 picks the mode and place, the rest is the value (or the plaintext).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vks_envelope.h"
#include "vks_secmem.h"

static struct vks_keyring *kr;

static const struct vks_envelope_place places[4] = {
    { "secret", "smtp-auth/example.com", "password" },
    { "/secret/", "smtp-auth/example.com/", "password" },
    { "kv", "a", "" },
    { NULL, NULL, NULL },
};

static void setup(void)
{
    struct vks_err e;
    if (vks_keyring_new(&kr, &e) != VKS_OK ||
        vks_keyring_add(kr, "k1", (const unsigned char *)"fuzz-key-one-0123456789abcdefghi", &e) != VKS_OK ||
        vks_keyring_add(kr, "k2", (const unsigned char *)"fuzz-key-two-0123456789abcdefghi", &e) != VKS_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!kr)
        setup();
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    const struct vks_envelope_place *pl = &places[mode & 3];
    data++;
    size--;
    struct vks_err e;

    if ((mode & 0x30) == 0x30) {
        /* round trip: arbitrary plaintext, both formats, decrypt at the same place; a plaintext
         * longer than the envelope limit allows must be refused, never written */
        char *env = NULL;
        const char *id = (mode & 0x40) ? "k2" : ((mode & 0x80) ? NULL : "k1");
        size_t max = vks_envelope_plaintext_max(id);
        if (size > max) {
            if (vks_envelope_encrypt(kr, id, pl, data, size, &env, &e) == VKS_OK)
                abort();
            size = max;
        }
        if (vks_envelope_encrypt(kr, id, pl, data, size, &env, &e) != VKS_OK)
            abort();
        vks_secret out = VKS_SECRET_EMPTY;
        if (vks_envelope_decrypt(kr, (unsigned char *)env, strlen(env), pl, &out, NULL, &e) != VKS_OK)
            abort();
        if (out.len != size || (size && memcmp(out.data, data, size) != 0))
            abort();
        vks_secret_free(&out);
        free(env);
        return 0;
    }

    /* parse/decrypt: optionally add the prefix so the fuzzer spends its time past it */
    size_t n = size + ((mode & 0x10) ? 0 : 4) + ((mode & 0x20) ? 7 : 0);
    unsigned char *v = malloc(n ? n : 1);
    size_t o = 0;
    if (!(mode & 0x10)) {
        memcpy(v, "ENC:", 4);
        o = 4;
    }
    if (mode & 0x20) {
        memcpy(v + o, "v2:k1:", 6);
        o += 6;
        v[o++] = (unsigned char)(mode & 0x40 ? 'A' : 'B');
    }
    if (size)
        memcpy(v + o, data, size);

    vks_secret out = VKS_SECRET_EMPTY;
    struct vks_envelope_info info;
    vks_status st = vks_envelope_decrypt(kr, v, n, pl, &out, &info, &e);
    if (st == VKS_OK) {
        if (out.len > VKS_SECRET_MAX || (info.format != 1 && info.format != 2))
            abort();
    } else {
        if (out.data != NULL || e.msg[0] == '\0')
            abort();
    }
    vks_secret_free(&out);

    /* decrypt_into a caller slot: on failure the slot must be all zero */
    vks_secret slot = VKS_SECRET_EMPTY;
    if (vks_secret_alloc(VKS_SECRET_MAX, &slot, &e) != VKS_OK)
        abort();
    memset(slot.data, 0xAA, slot.cap);
    if (vks_envelope_decrypt_into(kr, v, n, pl, &slot, NULL, &e) != VKS_OK) {
        for (size_t i = 0; i < slot.cap; i++)
            if (slot.data[i] != 0)
                abort();
    }
    vks_secret_free(&slot);
    free(v);
    return 0;
}
