/* vault-dev TLS material: creates (or reuses) DIR/ca.pem, ca-key.pem, server.pem, server-key.pem.
 * Returns 0 and malloc'd PEM strings for the server certificate and key and the CA path. */
#ifndef VD_TLS_H
#define VD_TLS_H
#include <stdbool.h>
int vd_tls_prepare(const char *dir, char **cert_pem, char **key_pem, char **ca_path);
#endif
