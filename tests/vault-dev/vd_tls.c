/* vault-dev: a throw-away CA and a server certificate for 127.0.0.1 / localhost (OpenSSL 3). */
#include "vd_tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct vd_file_buf {
        char *p;
        size_t len, cap;
    } b = {0};
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b.len + n + 1 > b.cap) {
            b.cap = (b.len + n + 1) * 2;
            b.p = realloc(b.p, b.cap);
            if (!b.p)
                abort();
        }
        memcpy(b.p + b.len, tmp, n);
        b.len += n;
    }
    fclose(f);
    if (!b.p)
        return NULL;
    b.p[b.len] = 0;
    return b.p;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, bool ca)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_set_version(c, 2);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), (long)3650 * 24 * 3600);
    X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"vault-dev", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : c;
    int bad = 0;
    if (ca) {
        bad |= add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
        bad |= add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
        bad |= add_ext(c, iss, NID_subject_key_identifier, "hash");
        bad |= add_ext(c, iss, NID_authority_key_identifier, "keyid:always");
    } else {
        bad |= add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE");
        bad |= add_ext(c, iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        bad |= add_ext(c, iss, NID_ext_key_usage, "serverAuth");
        bad |= add_ext(c, iss, NID_subject_key_identifier, "hash");
        bad |= add_ext(c, iss, NID_authority_key_identifier, "keyid:always");
        bad |= add_ext(c, iss, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    }
    if (bad || !X509_sign(c, issuer_key, EVP_sha256())) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static int write_pem(const char *path, int mode, EVP_PKEY *key, X509 *cert)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    fchmod(fileno(f), (mode_t)mode);
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int vd_tls_prepare(const char *dir, char **cert_pem, char **key_pem, char **ca_path)
{
    mkdir(dir, 0700);
    char *ca = path_join(dir, "ca.pem"), *cak = path_join(dir, "ca-key.pem");
    char *crt = path_join(dir, "server.pem"), *key = path_join(dir, "server-key.pem");
    int rc = -1;
    if (access(ca, R_OK) || access(crt, R_OK) || access(key, R_OK)) {
        EVP_PKEY *ca_key = EVP_EC_gen("P-256");
        EVP_PKEY *srv_key = EVP_EC_gen("P-256");
        X509 *ca_cert = ca_key ? make_cert(ca_key, "vault-dev CA", NULL, ca_key, true) : NULL;
        X509 *srv_cert = ca_cert && srv_key ? make_cert(srv_key, "localhost", ca_cert, ca_key, false) : NULL;
        if (srv_cert && write_pem(cak, 0600, ca_key, NULL) == 0 &&
            write_pem(key, 0600, srv_key, NULL) == 0 && write_pem(crt, 0644, NULL, srv_cert) == 0 &&
            write_pem(ca, 0644, NULL, ca_cert) == 0)
            rc = 0;
        X509_free(srv_cert);
        X509_free(ca_cert);
        EVP_PKEY_free(srv_key);
        EVP_PKEY_free(ca_key);
        if (rc)
            goto out;
    }
    *cert_pem = read_file(crt);
    *key_pem = read_file(key);
    rc = (*cert_pem && *key_pem) ? 0 : -1;
out:
    free(cak);
    free(crt);
    free(key);
    if (rc == 0)
        *ca_path = ca;
    else
        free(ca);
    return rc;
}
