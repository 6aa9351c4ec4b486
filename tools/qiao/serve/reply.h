/* Queuing responses on an exchange's connection: JSON, errors, plain text
 * and the SSE stream of a generation. Each records the status (and error)
 * for the request log and returns what the MHD access handler returns. */
#ifndef QIAO_SERVE_REPLY_H
#define QIAO_SERVE_REPLY_H

#include <json-c/json.h>
#include <microhttpd.h>

#include "errors.h"
#include "exchange.h"

/* Takes `obj`. */
enum MHD_Result serve_reply_json(serve_exchange *x, unsigned status, json_object *obj);
enum MHD_Result serve_reply_error(serve_exchange *x, const serve_error *e);
enum MHD_Result serve_reply_text(serve_exchange *x, unsigned status, const char *content_type,
                                 const char *text, size_t len);
/* The SSE stream of x->generation (started with serve_generation_stream_begin). */
enum MHD_Result serve_reply_stream(serve_exchange *x);

/* While a request waits for the model, the connection's idle timeout is
 * off (the wait is not the client's doing); a reply turns it back on. */
void serve_reply_pause_timeout(serve_exchange *x);

#endif
