/*
 * reply.h - one HTTP answer of datapipe-server and the helpers that build and
 * send it. The bottom of the server's files: every other file may include it,
 * and reply.c calls no other file of server/.
 */
#ifndef DP_SRV_REPLY_H
#define DP_SRV_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct mg_connection;

/* One response: status, JSON body (malloc'd or static), extra header lines. */
struct srv_reply {
    int status;
    char *body;               /* JSON text, malloc'd; NULL for no body (204) */
    const char *content_type; /* default application/json */
    char headers[512];        /* extra "Name: value\r\n" lines */
    bool streamed;            /* the handler wrote the answer itself: send nothing */
};

/*
 * srv_reply_json - set r to status with the body
 * {"status_code": status, "status_message": message}; a NULL message gives the
 * status's own text. Replaces any body r had.
 */
void srv_reply_json(struct srv_reply *r, int status, const char *message);

/* srv_reply_header - add the line "name: value" to r's extra headers. */
void srv_reply_header(struct srv_reply *r, const char *name, const char *value);

/*
 * srv_reply_object - a new JSON object holding status_code and status_message
 * (as srv_reply_json writes them), for an answer that adds fields. The caller
 * owns it, or hands it to srv_reply_set.
 */
json_t *srv_reply_object(int status, const char *message);

/* srv_reply_set - set r to status with o as its body; takes o's reference. */
void srv_reply_set(struct srv_reply *r, int status, json_t *o);

/*
 * srv_reply_send - write r to c: status line, headers and body in one write.
 * Adds Connection: close for an HTTP/1.0 client; a HEAD request gets the
 * headers only. r stays the caller's to free.
 */
void srv_reply_send(struct mg_connection *c, struct srv_reply *r);

#endif
