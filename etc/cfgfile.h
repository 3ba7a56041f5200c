/*
 * cfgfile.h - one configuration file into a libconfig tree (cfgfile.c), for config.c only.
 * Not a public header: daemons and tests use etc/config.h.
 */
#ifndef DP_CFGFILE_H
#define DP_CFGFILE_H

#include <stdbool.h>

#include "etc/err.h"

struct config_t;

/*
 * dp_cfgfile_read - read the file at path into tree (initialised, empty): libconfig syntax
 * for names ending in .cfg or .conf, JSON otherwise (duplicate keys refused, the top level an
 * object; null only where a setting allows it, as ""; arrays of server.api_keys as libconfig
 * lists whose objects are groups). Values are not validated here: config.c does that.
 * An unreadable file, a syntax error and every value JSON cannot bring over are errors added
 * to e, each naming path ("f.json: line 3 column 5: ...").
 * Returns true when the file was read without error.
 */
bool dp_cfgfile_read(struct config_t *tree, const char *path, struct dp_errs *e);

#endif
