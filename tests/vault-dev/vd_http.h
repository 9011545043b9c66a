/* vault-dev HTTP glue between libmicrohttpd and the logical layer (vd_http.c). */
#ifndef VD_HTTP_H
#define VD_HTTP_H
#include <microhttpd.h>
#include "vd.h"
extern _Atomic int vd_stopping;
enum MHD_Result vd_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                          const char *version, const char *upload_data, size_t *upload_data_size,
                          void **con_cls);
void vd_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
const char *vd_query(const struct vd_req *q, const char *name);
#endif
