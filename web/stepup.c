/*
 * vks-serve: TOTP step-up before a reveal or an emergency reset (docs/serve.md "Step-up"). totp_file holds one line per
 * operator: "<operator> <base32 secret>" (the operator as Vault names the token: userpass-sam,
 * token-...); '#' comments. The file must not be readable by group or others (refused at start).
 * Secrets are kept in arena slots. A code is accepted within one 30 s step either side, once: a
 * counter at or below the last one accepted for that operator is a replay. An accepted code
 * steps the session up for 5 minutes. With totp_required, an operator without a secret cannot
 * reveal or reset at all (fail closed). Loop thread only.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve.h"
#include "vks_totp.h"

#define SV_TOTP_MAX 256
#define SV_STEPUP_SECONDS 300

static struct {
    char op[128];
    vks_secret key;
    int64_t last;
} K[SV_TOTP_MAX];
static int nk;

int sv_totp_load(const char *path, char *err, size_t n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 077)) {
        snprintf(err, n, "totp_file %s: %s", path, fd < 0 ? "cannot open" : "must be a regular file not readable by group or others");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    char line[512];
    int ln = 0, rc = 0;
    while (rc == 0 && f && fgets(line, sizeof line, f)) {
        ln++;
        char *op = strtok(line, " \t\r\n"), *b32 = op ? strtok(NULL, " \t\r\n") : NULL;
        if (!op || op[0] == '#')
            continue;
        unsigned char key[VKS_TOTP_KEY_MAX];
        int kl = b32 ? vks_base32_decode(b32, strlen(b32), key, sizeof key) : -1;
        struct vks_err e;
        if (kl < 10 || nk == SV_TOTP_MAX || strlen(op) >= sizeof K[0].op ||
            vks_secret_dup(key, (size_t)kl, &K[nk].key, &e) != VKS_OK) {
            snprintf(err, n, "totp_file %s:%d: want \"OPERATOR BASE32SECRET\" (a secret of 10-64 bytes)", path, ln);
            rc = -1;
        } else {
            snprintf(K[nk].op, sizeof K[nk].op, "%s", op);
            K[nk].last = -1;
            nk++;
        }
        vks_wipe(key, sizeof key);
        vks_wipe(line, sizeof line);
    }
    if (f)
        fclose(f);
    return rc;
}

static int find(const char *op)
{
    for (int i = 0; i < nk; i++)
        if (!strcmp(K[i].op, op))
            return i;
    return -1;
}

bool sv_stepup_needed(const struct sv_session *s, int64_t now)
{
    if (now < s->stepped_up_until)
        return false;
    return find(s->operator_name) >= 0 || sv_cfg->totp_required;
}

bool sv_stepup(struct sv_req *r, const char *code)
{
    int i = find(r->s->operator_name);
    if (i < 0) {
        sv_audit(r, "stepup", VKS_E_PERMISSION_DENIED, r->s->operator_name, "no TOTP secret enrolled");
        sv_send_error(r, 403, "totp_not_enrolled", "totp", "a one-time code is required and none is enrolled "
                      "for %s (totp_file)", r->s->operator_name);
        return false;
    }
    if (!code) {
        sv_send_error(r, 401, "totp_required", "totp", "a one-time code (TOTP) is required for this");
        return false;
    }
    int64_t c = vks_totp_match(K[i].key.data, K[i].key.len, code, r->now, 1);
    if (c < 0 || c <= K[i].last) {
        sv_audit(r, "stepup", VKS_E_AUTH_FAILED, r->s->operator_name, c < 0 ? "wrong code" : "code replayed");
        sv_send_error(r, 401, "totp_invalid", "totp", "the one-time code is wrong or was used already");
        return false;
    }
    K[i].last = c;
    r->s->stepped_up_until = r->now + SV_STEPUP_SECONDS;
    sv_audit(r, "stepup", VKS_OK, r->s->operator_name, "totp");
    return true;
}

void sv_totp_close(void)
{
    for (int i = 0; i < nk; i++)
        vks_secret_free(&K[i].key);
    nk = 0;
}
