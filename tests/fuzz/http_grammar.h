/*
 * http_grammar.h - the structured mode of fuzz_http: input bytes read as a stream of choices
 * that build well-formed requests (routes from the server's table, headers and bodies from
 * dictionaries, declared types from the fuzz configuration). Test code only: never linked
 * into a daemon.
 */
#ifndef DP_TESTS_FUZZ_HTTP_GRAMMAR_H
#define DP_TESTS_FUZZ_HTTP_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growing byte string; fzg_buf_free releases p. */
struct fzg_buf {
    char *p;
    size_t len;
    size_t cap;
};

void fzg_buf_free(struct fzg_buf *b);

/*
 * fzg_types_json - the "types" object of the fuzz configuration: the declared types the
 * grammar knows, those with use[i] false left out (use has fzg_types_len() entries; NULL:
 * all). Appends to out. Returns 0, or -1 when out of memory.
 */
int fzg_types_json(struct fzg_buf *out, const bool *use);

/* How many declared types the grammar knows; their order is that of fzg_types_json. */
size_t fzg_types_len(void);

/* The name of declared type i (i < fzg_types_len()). */
const char *fzg_type_name(size_t i);

/*
 * fzg_types_use - which declared types the server took (use has fzg_types_len() entries):
 * the grammar targets only those, and names the others as unknown types.
 */
void fzg_types_use(const bool *use);

/*
 * fzg_build - one connection's bytes from the choices in data[0..size): one request, or
 * up to three on a keep-alive connection (the same key sent again). Replaces out's
 * contents. Returns 0, or -1 when out of memory.
 */
int fzg_build(const uint8_t *data, size_t size, struct fzg_buf *out);

#endif
