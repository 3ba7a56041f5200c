/*
 * check_events.c - unit tests of events/: every type's valid and invalid
 * samples with their exact messages, body shapes, COPY rows and escaping,
 * statistics, the registry, regression cases found by the fuzzer, and UUIDv7 ids (also
 * across threads and fork). No database, no network; PostgreSQL round trips are in
 * check_events_pg.c.
 */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etc/err.h"
#include "events/events.h"
#include "events/internal.h"

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* One sample event: its type, its bytes, and NULL (valid) or its exact error. */
struct sample {
    const char *type;
    const char *json;
    const char *error;
};

static const struct sample samples[] = {
    /* crash_report: valid */
    {"crash_report",
     "{\"event_name\": \"crash_report\",\"user_id\": 888,\"timestamp\": 1000,"
     "\"message\": \"have_fun\"}",
     NULL},
    {"crash_report", "{\"user_id\": -5, \"timestamp\": 0, \"message\": \"\"}", NULL},
    {"crash_report",
     "{\"user_id\": 9223372036854775807, \"timestamp\": 253402300799, \"message\": \"x\"}", NULL},
    {"crash_report",
     "{\"message\": \"tab\\there \\u00e9 \\ud83d\\ude00\", \"timestamp\": 1, \"user_id\": 1}",
     NULL},
    /* crash_report: invalid */
    {"crash_report", "{\"user_id\": \"888\", \"timestamp\": 1000, \"message\": \"m\"}",
     "user_id: expected integer, got string"},
    {"crash_report", "{\"user_id\": 1.5, \"timestamp\": 1000, \"message\": \"m\"}",
     "user_id: expected integer, got number"},
    {"crash_report", "{\"user_id\": null, \"timestamp\": 1000, \"message\": \"m\"}",
     "user_id: expected integer, got null"},
    {"crash_report", "{\"user_id\": true, \"timestamp\": 1000, \"message\": \"m\"}",
     "user_id: expected integer, got boolean"},
    {"crash_report", "{\"timestamp\": 1000, \"message\": \"m\"}",
     "user_id: required field missing"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": -1, \"message\": \"m\"}",
     "timestamp: out of range (0 to 253402300799 epoch seconds)"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 253402300800, \"message\": \"m\"}",
     "timestamp: out of range (0 to 253402300799 epoch seconds)"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": \"1000\", \"message\": \"m\"}",
     "timestamp: expected integer, got string"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1e3, \"message\": \"m\"}",
     "timestamp: expected integer epoch seconds, got floating-point number 1000"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1700000000.5, \"message\": \"m\"}",
     "timestamp: expected integer epoch seconds, got floating-point number 1700000000.5"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1700000000123.0, \"message\": \"m\"}",
     "timestamp: expected integer epoch seconds, got floating-point number 1700000000123 "
     "(it looks like milliseconds)"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1700000000123, \"message\": \"m\"}",
     "timestamp: 1700000000123 looks like milliseconds: expected integer epoch seconds "
     "(1700000000)"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 253402300799999, \"message\": \"m\"}",
     "timestamp: 253402300799999 looks like milliseconds: expected integer epoch seconds "
     "(253402300799)"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 253402300800000, \"message\": \"m\"}",
     "timestamp: out of range (0 to 253402300799 epoch seconds)"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1000, \"message\": 5}",
     "message: expected string, got integer"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1000, \"message\": {}}",
     "message: expected string, got object"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1000}", "message: required field missing"},
    {"crash_report", "{\"user_id\": 1, \"timestamp\": 1000, \"message\": \"m\", \"extra\": 1}",
     "extra: unknown field"},
    {"crash_report", "{\"userid\": 1, \"timestamp\": 1000, \"message\": \"m\"}",
     "userid: unknown field"},
    {"crash_report",
     "{\"event_name\": \"ad_event\", \"user_id\": 1, \"timestamp\": 1000, \"message\": \"m\"}",
     "event_name: \"ad_event\" does not match the URL's type \"crash_report\""},
    {"crash_report", "{\"event_name\": 7, \"user_id\": 1, \"timestamp\": 1000, \"message\": \"m\"}",
     "event_name: expected string, got integer"},
    {"crash_report", "[1]", "event: expected object, got integer"},
    {"crash_report", "{\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\": 1}",
     "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...: unknown field"},
    {"crash_report", "{\"a\\u0001\\\"b\": 1}", "a\\x01\"b: unknown field"},

    /* ad_event: valid */
    {"ad_event",
     "{\"event_name\": \"ad_event\", \"ip_address\": \"192.168.1.20\", "
     "\"user_agent\": \"Mozilla/5.0\", \"referring_url\": \"https://example.com/a?b=c#d\", "
     "\"advertiser_id\": \"adv-1\", \"metadata\": {\"campaign\": \"x\", \"n\": [1, 2.50]}}",
     NULL},
    {"ad_event",
     "{\"ip_address\": \"0.0.0.0\", \"user_agent\": \"\", \"referring_url\": "
     "\"HTTP://[2001:db8::1]:8080/\", \"advertiser_id\": \"a\"}",
     NULL},
    {"ad_event",
     "{\"ip_address\": \"255.255.255.255\", \"user_agent\": \"curl\", \"referring_url\": "
     "\"http://user:pw@host.example:1/p%20q\", \"advertiser_id\": \"a\", \"metadata\": {}}",
     NULL},
    /* ad_event: invalid */
    {"ad_event",
     "{\"ip_address\": \"01.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\"}",
     "ip_address: not a dotted-quad IPv4 address"},
    {"ad_event",
     "{\"ip_address\": \"256.1.1.1\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\"}",
     "ip_address: not a dotted-quad IPv4 address"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\"}",
     "ip_address: not a dotted-quad IPv4 address"},
    {"ad_event",
     "{\"ip_address\": \"::1\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\"}",
     "ip_address: not a dotted-quad IPv4 address"},
    {"ad_event",
     "{\"ip_address\": \" 1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\"}",
     "ip_address: not a dotted-quad IPv4 address"},
    {"ad_event",
     "{\"ip_address\": 16909060, \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\"}",
     "ip_address: expected string, got integer"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"ftp://a/\", "
     "\"advertiser_id\": \"a\"}",
     "referring_url: scheme must be http or https"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"/a/b\", "
     "\"advertiser_id\": \"a\"}",
     "referring_url: not an absolute URL (no scheme)"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http:/a\", "
     "\"advertiser_id\": \"a\"}",
     "referring_url: URL has no host"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"https://\", "
     "\"advertiser_id\": \"a\"}",
     "referring_url: URL has no host"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a b\", "
     "\"advertiser_id\": \"a\"}",
     "referring_url: not a valid URL (syntax error at character 9)"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"\"}",
     "advertiser_id: must not be empty"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": 12}",
     "advertiser_id: expected string, got integer"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\", \"metadata\": []}",
     "metadata: expected object, got array"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\", \"metadata\": null}",
     "metadata: expected object, got null"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"referring_url\": \"http://a\", \"advertiser_id\": \"a\"}",
     "user_agent: required field missing"},
    {"ad_event",
     "{\"ip_address\": \"1.2.3.4\", \"user_agent\": \"u\", \"referring_url\": \"http://a\", "
     "\"advertiser_id\": \"a\", \"ip\": \"1.2.3.4\"}",
     "ip: unknown field"},

    /* user_login: valid */
    {"user_login",
     "{\"event_name\": \"user_login\", \"user_id\": \"u-1\", \"timestamp\": 1700000000, "
     "\"app_version\": \"1.2.3\", \"device_type\": \"phone\", \"ip\": \"2001:db8::1\", "
     "\"locale\": \"fr_FR\", \"device_id\": \"d\"}",
     NULL},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": \"0001700000000\", \"ip\": \"10.0.0.1\"}",
     NULL},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 0, \"locale\": null, \"ip\": null}", NULL},
    /* user_login: invalid */
    {"user_login", "{\"user_id\": 5, \"timestamp\": 1}", "user_id: expected string, got integer"},
    {"user_login", "{\"user_id\": \"\", \"timestamp\": 1}", "user_id: must not be empty"},
    {"user_login", "{\"timestamp\": 1}", "user_id: required field missing"},
    {"user_login", "{\"user_id\": \"u\"}", "timestamp: required field missing"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": \"12a\"}",
     "timestamp: not a string of digits"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": \"-5\"}",
     "timestamp: not a string of digits"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": \"\"}", "timestamp: must not be empty"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1.5}",
     "timestamp: expected integer epoch seconds, got floating-point number 1.5"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": \"1700000000123\"}",
     "timestamp: 1700000000123 looks like milliseconds: expected integer epoch seconds "
     "(1700000000)"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1700000000123}",
     "timestamp: 1700000000123 looks like milliseconds: expected integer epoch seconds "
     "(1700000000)"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": true}",
     "timestamp: expected integer or string of digits, got boolean"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": \"99999999999999999999999\"}",
     "timestamp: out of range (0 to 253402300799 epoch seconds)"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": -1}",
     "timestamp: out of range (0 to 253402300799 epoch seconds)"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1, \"ip\": \"1.2.3.4.5\"}",
     "ip: not an IPv4 or IPv6 address"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1, \"ip\": \"fe80::1%eth0\"}",
     "ip: not an IPv4 or IPv6 address"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1, \"app_version\": 1}",
     "app_version: expected string, got integer"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1, \"locale\": true}",
     "locale: expected string, got boolean"},
    {"user_login", "{\"user_id\": \"u\", \"timestamp\": 1, \"password\": \"x\"}",
     "password: unknown field"},

    /* product: valid */
    {"product",
     "{\"event_name\": \"product\", \"id\": \"sku-1\", \"name\": \"Lamp\", \"price\": 12.50, "
     "\"tags\": [\"a\", \"b\"], \"dims\": {\"w\": 1}}",
     NULL},
    {"product", "{\"id\": 42}", NULL},
    {"product", "{\"id\": \"x\", \"anything\": null, \"nested\": {\"event_name\": 1}}", NULL},
    /* product: invalid */
    {"product", "{\"name\": \"Lamp\"}", "id: required field missing"},
    {"product", "{\"id\": \"\"}", "id: must not be empty"},
    {"product", "{\"id\": 1.5}", "id: expected string or integer, got number"},
    {"product", "{\"id\": null}", "id: expected string or integer, got null"},
    {"product", "{\"id\": [1]}", "id: expected string or integer, got array"},
    {"product", "{\"id\": {}}", "id: expected string or integer, got object"},
    {"product", "{\"id\": false}", "id: expected string or integer, got boolean"},
    {"product", "{\"event_name\": \"Product\", \"id\": 1}",
     "event_name: \"Product\" does not match the URL's type \"product\""},
    {"product", "{\"event_name\": null, \"id\": 1}", "event_name: expected string, got null"},
    {"product", "\"sku-1\"", "event: expected object, got string"},
    {"product", "[[{\"id\": 1}]]", "event: expected object, got array"},

    /* data_sample: valid */
    {"data_sample",
     "{\"event_name\": \"data_sample\", \"time_stamp\": \"2024-05-01T12:00:00Z\", "
     "\"data\": [1, 2, 3.5]}",
     NULL},
    {"data_sample", "{\"time_stamp\": \"2024-02-29t23:59:59.123456789+05:30\", \"data\": [0]}",
     NULL},
    {"data_sample", "{\"time_stamp\": \"1999-12-31 23:59:60.5z\", \"data\": [1]}",
     "time_stamp: second out of range (00-59, no leap seconds)"},
    {"data_sample", "{\"data\": [-1e300, 1e300], \"time_stamp\": \"0001-01-01T00:00:00Z\"}", NULL},
    /* data_sample: invalid */
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00\", \"data\": [1]}",
     "time_stamp: missing UTC offset (Z or +hh:mm)"},
    {"data_sample", "{\"time_stamp\": \"2024-02-30T00:00:00Z\", \"data\": [1]}",
     "time_stamp: day out of range for the month"},
    {"data_sample", "{\"time_stamp\": \"2023-02-29T00:00:00Z\", \"data\": [1]}",
     "time_stamp: day out of range for the month"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T24:00:00Z\", \"data\": [1]}",
     "time_stamp: hour out of range (00-23)"},
    {"data_sample", "{\"time_stamp\": \"2024-13-01T00:00:00Z\", \"data\": [1]}",
     "time_stamp: month out of range (01-12)"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:60:00Z\", \"data\": [1]}",
     "time_stamp: minute out of range (00-59)"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01\", \"data\": [1]}",
     "time_stamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00.Z\", \"data\": [1]}",
     "time_stamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00+0100\", \"data\": [1]}",
     "time_stamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z \", \"data\": [1]}",
     "time_stamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or +hh:mm)"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00+24:00\", \"data\": [1]}",
     "time_stamp: UTC offset out of range"},
    {"data_sample", "{\"time_stamp\": \"0001-01-01T00:00:00+00:01\", \"data\": [1]}",
     "time_stamp: out of range (years 0001 to 9999 in UTC)"},
    {"data_sample", "{\"time_stamp\": \"9999-12-31T23:59:59-00:01\", \"data\": [1]}",
     "time_stamp: out of range (years 0001 to 9999 in UTC)"},
    {"data_sample", "{\"time_stamp\": 1700000000, \"data\": [1]}",
     "time_stamp: expected string, got integer"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": []}",
     "data: must not be empty"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [1, \"2\"]}",
     "data[1]: expected number, got string"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [1, 2, null]}",
     "data[2]: expected number, got null"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": {\"a\": 1}}",
     "data: expected array, got object"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\"}", "data: required field missing"},
    {"data_sample", "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [1], \"unit\": \"s\"}",
     "unit: unknown field"},
    /* Segment tracking API messages (events/segment.c): valid, then invalid */
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\":"
     " \"a-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"ti"
     "mestamp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z"
     "\", \"sentAt\": \"2026-03-01T10:00:01+01:00\", \"traits\": {\"plan\": \"pro\"}}",
     NULL},
    {"identifies", "{\"type\": \"identify\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     NULL},
    {"identifies", "{\"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: required field missing"},
    {"identifies", "{\"type\": 1, \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: expected string, got integer"},
    {"identifies", "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: expected \"identify\" for identifies"},
    {"identifies", "{\"type\": \"identify\", \"anonymousId\": \"a-2\"}",
     "messageId: required field missing"},
    {"identifies", "{\"type\": \"identify\", \"messageId\": \"\", \"anonymousId\": \"a-2\"}",
     "messageId: must not be empty"},
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"anonymousId\": \"a-2\"}",
     "messageId: 256 bytes, longer than 255"},
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"context\""
     ": [1]}",
     "context: expected object, got array"},
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"timestamp"
     "\": \"2026-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"identifies", "{\"type\": \"identify\", \"messageId\": \"m-2\"}",
     "userId or anonymousId: one of them is required"},
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"userId\":"
     " true}",
     "userId: expected string or integer, got boolean"},
    {"identifies",
     "{\"type\": \"identify\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"traits\":"
     " \"x\"}",
     "traits: expected object, got string"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\": \""
     "a-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"times"
     "tamp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z\","
     " \"sentAt\": \"2026-03-01T10:00:01+01:00\", \"event\": \"Signed Up\", \"properties\": "
     "{\"via\": \"ad\", \"n\": 1}}",
     NULL},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     NULL},
    {"tracks", "{\"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     "type: required field missing"},
    {"tracks", "{\"type\": 1, \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     "type: expected string, got integer"},
    {"tracks",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     "type: expected \"track\" for tracks"},
    {"tracks", "{\"type\": \"track\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     "messageId: required field missing"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     "messageId: must not be empty"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"anonymousId\": \"a-2\", \"event\": \"E\"}",
     "messageId: 256 bytes, longer than 255"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E"
     "\", \"context\": [1]}",
     "context: expected object, got array"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E"
     "\", \"timestamp\": \"2026-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E"
     "\", \"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"tracks", "{\"type\": \"track\", \"messageId\": \"m-2\", \"event\": \"E\"}",
     "userId or anonymousId: one of them is required"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E"
     "\", \"userId\": true}",
     "userId: expected string or integer, got boolean"},
    {"tracks", "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "event: required field missing"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"\"}",
     "event: must not be empty"},
    {"tracks",
     "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"event\": \"E"
     "\", \"properties\": 5}",
     "properties: expected object, got integer"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\": \"a"
     "-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"timest"
     "amp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z\", "
     "\"sentAt\": \"2026-03-01T10:00:01+01:00\", \"name\": \"Home\", \"properties\": {\"path"
     "\": \"/\"}}",
     NULL},
    {"pages", "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}", NULL},
    {"pages", "{\"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}", "type: required field missing"},
    {"pages", "{\"type\": 1, \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: expected string, got integer"},
    {"pages", "{\"type\": \"track\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: expected \"page\" for pages"},
    {"pages", "{\"type\": \"page\", \"anonymousId\": \"a-2\"}",
     "messageId: required field missing"},
    {"pages", "{\"type\": \"page\", \"messageId\": \"\", \"anonymousId\": \"a-2\"}",
     "messageId: must not be empty"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"anonymousId\": \"a-2\"}",
     "messageId: 256 bytes, longer than 255"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"context\": [1]}",
     "context: expected object, got array"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"timestamp\": "
     "\"2026-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"pages", "{\"type\": \"page\", \"messageId\": \"m-2\"}",
     "userId or anonymousId: one of them is required"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"userId\": true}",
     "userId: expected string or integer, got boolean"},
    {"pages",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"properties\": 5}",
     "properties: expected object, got integer"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\": "
     "\"a-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"tim"
     "estamp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z"
     "\", \"sentAt\": \"2026-03-01T10:00:01+01:00\", \"name\": \"Cart\", \"properties\": {\""
     "items\": 2}}",
     NULL},
    {"screens", "{\"type\": \"screen\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}", NULL},
    {"screens", "{\"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: required field missing"},
    {"screens", "{\"type\": 1, \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: expected string, got integer"},
    {"screens", "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "type: expected \"screen\" for screens"},
    {"screens", "{\"type\": \"screen\", \"anonymousId\": \"a-2\"}",
     "messageId: required field missing"},
    {"screens", "{\"type\": \"screen\", \"messageId\": \"\", \"anonymousId\": \"a-2\"}",
     "messageId: must not be empty"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"anonymousId\": \"a-2\"}",
     "messageId: 256 bytes, longer than 255"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"context\": [1]}",
     "context: expected object, got array"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"timestamp\""
     ": \"2026-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"screens", "{\"type\": \"screen\", \"messageId\": \"m-2\"}",
     "userId or anonymousId: one of them is required"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"userId\": true}",
     "userId: expected string or integer, got boolean"},
    {"screens",
     "{\"type\": \"screen\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"properties\": 5}",
     "properties: expected object, got integer"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\": \""
     "a-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"times"
     "tamp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z\","
     " \"sentAt\": \"2026-03-01T10:00:01+01:00\", \"groupId\": \"g-1\", \"traits\": {\"name"
     "\": \"Acme\"}}",
     NULL},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     NULL},
    {"groups", "{\"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     "type: required field missing"},
    {"groups", "{\"type\": 1, \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     "type: expected string, got integer"},
    {"groups",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     "type: expected \"group\" for groups"},
    {"groups", "{\"type\": \"group\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     "messageId: required field missing"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     "messageId: must not be empty"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"anonymousId\": \"a-2\", \"groupId\": 7}",
     "messageId: 256 bytes, longer than 255"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7"
     ", \"context\": [1]}",
     "context: expected object, got array"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7"
     ", \"timestamp\": \"2026-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7"
     ", \"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"groups", "{\"type\": \"group\", \"messageId\": \"m-2\", \"groupId\": 7}",
     "userId or anonymousId: one of them is required"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7"
     ", \"userId\": true}",
     "userId: expected string or integer, got boolean"},
    {"groups", "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\"}",
     "groupId: required field missing"},
    {"groups",
     "{\"type\": \"group\", \"messageId\": \"m-2\", \"anonymousId\": \"a-2\", \"groupId\": 7"
     ", \"traits\": \"x\"}",
     "traits: expected object, got string"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\": \""
     "a-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"times"
     "tamp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z\","
     " \"sentAt\": \"2026-03-01T10:00:01+01:00\", \"previousId\": \"a-1\"}",
     NULL},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\"}", NULL},
    {"aliases", "{\"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\"}",
     "type: required field missing"},
    {"aliases", "{\"type\": 1, \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\"}",
     "type: expected string, got integer"},
    {"aliases",
     "{\"type\": \"page\", \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\"}",
     "type: expected \"alias\" for aliases"},
    {"aliases", "{\"type\": \"alias\", \"userId\": 42, \"previousId\": \"p\"}",
     "messageId: required field missing"},
    {"aliases", "{\"type\": \"alias\", \"messageId\": \"\", \"userId\": 42, \"previousId\": \"p\"}",
     "messageId: must not be empty"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"userId\": 42, \"previousId\": \"p\"}",
     "messageId: 256 bytes, longer than 255"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\", "
     "\"context\": [1]}",
     "context: expected object, got array"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\", "
     "\"timestamp\": \"2026-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"p\", "
     "\"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"aliases", "{\"type\": \"alias\", \"messageId\": \"m-2\", \"previousId\": \"p\"}",
     "userId: required field missing"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-2\", \"userId\": true, \"previousId\": \"p\"}",
     "userId: expected string or integer, got boolean"},
    {"aliases",
     "{\"type\": \"alias\", \"messageId\": \"m-2\", \"userId\": 42, \"previousId\": \"\"}",
     "previousId: must not be empty"},
    {"users",
     "{\"type\": \"identify\", \"messageId\": \"m-1\", \"userId\": \"u-1\", \"anonymousId\":"
     " \"a-1\", \"context\": {\"ip\": \"10.0.0.1\"}, \"integrations\": {\"All\": true}, \"ti"
     "mestamp\": \"2026-03-01T10:00:00.000Z\", \"originalTimestamp\": \"2026-03-01T09:59:59Z"
     "\", \"sentAt\": \"2026-03-01T10:00:01+01:00\", \"traits\": {\"plan\": \"pro\"}}",
     NULL},
    {"users", "{\"type\": \"identify\", \"messageId\": \"m-2\", \"userId\": 42}", NULL},
    {"users", "{\"messageId\": \"m-2\", \"userId\": 42}", "type: required field missing"},
    {"users", "{\"type\": 1, \"messageId\": \"m-2\", \"userId\": 42}",
     "type: expected string, got integer"},
    {"users", "{\"type\": \"page\", \"messageId\": \"m-2\", \"userId\": 42}",
     "type: expected \"identify\" for users"},
    {"users", "{\"type\": \"identify\", \"userId\": 42}", "messageId: required field missing"},
    {"users", "{\"type\": \"identify\", \"messageId\": \"\", \"userId\": 42}",
     "messageId: must not be empty"},
    {"users",
     "{\"type\": \"identify\", \"messageId\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\", \"userId\": 42}",
     "messageId: 256 bytes, longer than 255"},
    {"users", "{\"type\": \"identify\", \"messageId\": \"m-2\", \"userId\": 42, \"context\": [1]}",
     "context: expected object, got array"},
    {"users",
     "{\"type\": \"identify\", \"messageId\": \"m-2\", \"userId\": 42, \"timestamp\": \"2026"
     "-03-01\"}",
     "timestamp: not an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS[.frac] then Z or "
     "+hh:mm)"},
    {"users", "{\"type\": \"identify\", \"messageId\": \"m-2\", \"userId\": 42, \"sentAt\": 12}",
     "sentAt: expected string, got integer"},
    {"users", "{\"type\": \"identify\", \"messageId\": \"m-2\"}", "userId: required field missing"},
    {"users", "{\"type\": \"identify\", \"messageId\": \"m-2\", \"userId\": true}",
     "userId: expected string or integer, got boolean"},
    {"users", "{\"type\": \"identify\", \"messageId\": \"m-2\", \"userId\": 42, \"traits\": \"x\"}",
     "traits: expected object, got string"},
};

static const uint8_t fixed_uuid[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
#define TEST_UUID_TEXT "01020304-0506-0708-090a-0b0c0d0e0f10"
#define TEST_RECEIVED_US INT64_C(1700000000123456)
#define TEST_RECEIVED_TEXT "2023-11-14 22:13:20.123456+00"
#define TEST_NOW_US INT64_C(1700000060000000)
#define TEST_NOW_TEXT "2023-11-14 22:14:20.000000+00"

/* Parse a body as one event of type (a name, or NULL); return its item (batch owns it). */
static const struct ev_item *
parse_one(struct ev_batch *b, const char *type, const char *json)
{
    const struct ev_type *t = NULL;
    int rc;

    if (type != NULL) {
        t = ev_lookup(type, strlen(type));
        ck_assert_ptr_nonnull(t);
    }
    rc = ev_parse_body(json, strlen(json), t, b);
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(b->n == 1, "%s: %zu items", json, b->n);
    return &b->items[0];
}

/* Encode json as type into a NUL-terminated malloc'd row; *rc gets the result. */
static char *
encode(const char *type, const char *json, int *rc, char err[EV_ERR_MAX])
{
    const struct ev_type *t = ev_lookup(type, strlen(type));
    struct ev_stored ev = {
        .json = json,
        .json_len = strlen(json),
        .received_us = TEST_RECEIVED_US,
        .now_us = TEST_NOW_US,
        .seq = 77,
    };
    struct ev_buf b = {0};
    char *row;

    ck_assert_ptr_nonnull(t);
    memcpy(ev.uuid, fixed_uuid, 16);
    err[0] = '\0';
    *rc = ev_encode(t, &ev, &b, err);
    row = malloc(b.len + 1);
    ck_assert_ptr_nonnull(row);
    if (b.len > 0) {
        memcpy(row, b.data, b.len);
    }
    row[b.len] = '\0';
    ev_buf_free(&b);
    return row;
}

/* Column i (0-based) of a COPY row, copied (escapes kept). */
static char *
column(const char *row, int i)
{
    const char *p = row;
    size_t n;
    char *out;

    while (i-- > 0) {
        p = strchr(p, '\t');
        ck_assert_ptr_nonnull(p);
        p++;
    }
    n = strcspn(p, "\t\n");
    out = strndup(p, n);
    ck_assert_ptr_nonnull(out);
    return out;
}

START_TEST(test_sample)
{
    const struct sample *s = &samples[_i];
    struct ev_batch b = {0};
    const struct ev_item *it = parse_one(&b, s->type, s->json);

    if (s->error == NULL) {
        ck_assert_msg(it->error == NULL, "%s: unexpected error: %s", s->json, it->error);
        ck_assert_uint_eq(b.n_valid, 1);
    } else {
        ck_assert_msg(it->error != NULL, "%s: accepted, expected: %s", s->json, s->error);
        ck_assert_str_eq(it->error, s->error);
        ck_assert_uint_eq(b.n_valid, 0);
    }
    ck_assert_ptr_eq(it->type, ev_lookup(s->type, strlen(s->type)));
    ck_assert_uint_eq(it->index, 0);
    ev_batch_free(&b);
}
END_TEST

/* The samples that name their type also go through POST /v1/events (no URL type). */
START_TEST(test_sample_untyped)
{
    const struct sample *s = &samples[_i];
    struct ev_batch b = {0};
    const struct ev_item *it;
    char name[64];

    snprintf(name, sizeof(name), "\"event_name\": \"%s\"", s->type);
    if (strstr(s->json, name) == NULL) {
        return;
    }
    it = parse_one(&b, NULL, s->json);
    if (s->error == NULL) {
        ck_assert_msg(it->error == NULL, "%s: %s", s->json, it->error);
    } else {
        ck_assert_str_eq(it->error, s->error);
    }
    ck_assert_ptr_eq(it->type, ev_lookup(s->type, strlen(s->type)));
    ev_batch_free(&b);
}
END_TEST

/* Every valid sample encodes; every row has as many columns as copy_columns. */
START_TEST(test_sample_encodes)
{
    const struct sample *s = &samples[_i];
    const struct ev_type *t = ev_lookup(s->type, strlen(s->type));
    char err[EV_ERR_MAX];
    const char *json = s->json;
    size_t tabs = 0;
    size_t commas = 0;
    char *row;
    int rc;

    if (s->error != NULL || json[0] != '{') {
        return;
    }
    row = encode(s->type, json, &rc, err);
    ck_assert_msg(rc == 0, "%s: %s", json, err);
    for (const char *p = row; *p; p++) {
        tabs += *p == '\t';
    }
    for (const char *p = t->copy_columns; *p; p++) {
        commas += *p == ',';
    }
    ck_assert_uint_eq(tabs, commas);
    ck_assert_int_eq(row[strlen(row) - 1], '\n');
    ck_assert_ptr_eq(strchr(row, '\n'), row + strlen(row) - 1);
    free(row);
}
END_TEST

START_TEST(test_untyped_dispatch)
{
    static const struct {
        const char *json;
        const char *error;
    } cases[] = {
        {"{\"user_id\": 1}", "event_name: required field missing (the URL names no type)"},
        {"{\"event_name\": \" crash_report\", \"user_id\": 1}",
         "event_name: unknown event type \" crash_report\""
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": \"crash_report \"}",
         "event_name: unknown event type \"crash_report \""
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": \"CRASH_REPORT\"}",
         "event_name: unknown event type \"CRASH_REPORT\""
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": \"\"}",
         "event_name: unknown event type \"\""
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": \"a\\\"b\\\\c\\n\\u0001\"}",
         "event_name: unknown event type \"a\\\"b\\\\c\\x0a\\x01\""
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": \"\\u00e9v\\u00e9nement\"}",
         "event_name: unknown event type \"\xc3\xa9v\xc3\xa9nement\""
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": "
         "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
         "event_name: unknown event type "
         "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"..."
         " (valid types: crash_report, ad_event, user_login, product, data_sample, "
         "identifies, tracks, pages, screens, groups, aliases, users)"},
        {"{\"event_name\": [\"crash_report\"]}", "event_name: expected string, got array"},
        {"42", "event: expected object, got integer"},
        {"null", "event: expected object, got null"},
    };
    struct ev_batch b = {0};
    const struct ev_item *it = parse_one(&b, NULL, cases[_i].json);

    ck_assert_ptr_nonnull(it->error);
    ck_assert_str_eq(it->error, cases[_i].error);
    ck_assert_ptr_null(it->type);
    ev_batch_free(&b);
}
END_TEST

/*
 * server.max_events_per_body: parsing stops at the cap (DP_ERR_FULL, too_many), also inside
 * an array and for CloudEvents batches; at the cap exactly it passes. Rejected events that
 * fail alike share one error text (the batch frees it once).
 */
START_TEST(test_max_events)
{
    const struct ev_type *t = ev_lookup("crash_report", strlen("crash_report"));
    static const char ok3[] = "1\n2\n{\"user_id\": 1}\n";
    static const char arr[] = "[1, 2, 3, 4]";
    static const char ce[] = "[{}, {}, {}]";
    struct ev_batch b = {0};

    b.max_events = 3;
    ck_assert_int_eq(ev_parse_body(ok3, strlen(ok3), t, &b), 0);
    ck_assert_uint_eq(b.n, 3);
    ck_assert(!b.too_many);
    /* "1" and "2" fail alike: one text, shared */
    ck_assert_str_eq(b.items[0].error, "event: expected object, got integer");
    ck_assert_ptr_eq(b.items[1].error, b.items[0].error);
    ck_assert(b.items[1].error_shared);
    ck_assert(!b.items[0].error_shared);
    ck_assert_ptr_ne(b.items[2].error, b.items[0].error);
    ev_batch_free(&b);
    ck_assert(!b.too_many);

    b.max_events = 3;
    ck_assert_int_eq(ev_parse_body(arr, strlen(arr), t, &b), DP_ERR_FULL);
    ck_assert(b.too_many);
    ck_assert_uint_eq(b.n, 3);
    ev_batch_free(&b);

    b.max_events = 2;
    ck_assert_int_eq(ev_parse_cloudevents(ce, strlen(ce), true, &b), DP_ERR_FULL);
    ck_assert(b.too_many);
    ev_batch_free(&b);

    b.max_events = 0; /* no cap */
    ck_assert_int_eq(ev_parse_body(arr, strlen(arr), t, &b), 0);
    ck_assert_uint_eq(b.n, 4);
    ev_batch_free(&b);
}
END_TEST

/* Bytes the parser itself rejects: each with its exact message. */
START_TEST(test_bad_json)
{
    static const struct {
        const char *json;
        const char *error;
    } cases[] = {
        {"{\"user_id\": \"\xff\"}",
         "line 1 column 13: invalid UTF-8: unable to decode byte 0xff near '\"'"},
        {"{\"a\xc0\xaf\": 1}",
         "line 1 column 3: invalid UTF-8: unable to decode byte 0xc0 near '\"a'"},
        {"{\"a\": \"\xed\xa0\x80\"}",
         "line 1 column 7: invalid UTF-8: unable to decode byte 0xed near '\"'"},
        {"{\"a\": \"x\\u0000y\"}", "line 1 column 16: \\u0000 is not allowed in strings"},
        {"{\"a\\u0000\": 1}", "line 1 column 10: \\u0000 is not allowed in object keys"},
        {"{\"a\": \"\\ud800\"}",
         "line 1 column 14: invalid JSON: invalid Unicode '\\uD800' near '\"\\ud800\"'"},
        {"{\"user_id\": 9223372036854775808}",
         "line 1 column 31: integer out of range (beyond 64-bit signed): too big integer near "
         "'9223372036854775808'"},
        {"{\"user_id\": -9223372036854775809}",
         "line 1 column 32: integer out of range (beyond 64-bit signed): too big negative "
         "integer near '-9223372036854775809'"},
        {"{\"x\": 1e309}",
         "line 1 column 11: number out of range (beyond double precision): real number "
         "overflow near '1e309'"},
        {"{\"x\": -1.8e308}",
         "line 1 column 14: number out of range (beyond double precision): real number "
         "overflow near '-1.8e308'"},
        {"{\"a\": 1, \"a\": 2}",
         "line 1 column 12: invalid JSON: duplicate object key near '\"a\"'"},
        {"{\"a\": \"tab\there\"}",
         "line 1 column 10: invalid JSON: control character 0x9 near '\"tab'"},
        {"{\"a\": 01}", "line 1 column 7: invalid JSON: invalid token near '0'"},
        {"{'a': 1}", "line 1 column 2: invalid JSON: string or '}' expected near '''"},
        {"{\"a\": 1", "line 1 column 7: invalid JSON: '}' expected near end of file"},
        {"{\"a\": NaN}", "line 1 column 9: invalid JSON: invalid token near 'NaN'"},
    };
    struct ev_batch b = {0};
    const struct ev_item *it = parse_one(&b, "crash_report", cases[_i].json);

    ck_assert_ptr_nonnull(it->error);
    ck_assert_str_eq(it->error, cases[_i].error);
    ck_assert_uint_eq(b.n_valid, 0);
    ck_assert_uint_eq(it->raw_len, strlen(cases[_i].json));
    ev_batch_free(&b);
}
END_TEST

#define CR(uid)                                                                                    \
    "{\"event_name\": \"crash_report\", \"user_id\": " #uid ", \"timestamp\": 1, "                 \
    "\"message\": \"m\"}"

/* Check a batch: n items, the error (or NULL) of each, raw bytes of each. */
static void
expect_batch(const char *body, size_t n, const char *const *errors, const char *const *raws)
{
    struct ev_batch b = {0};
    size_t valid = 0;
    size_t i;

    ck_assert_int_eq(ev_parse_body(body, strlen(body), NULL, &b), 0);
    ck_assert_uint_eq(b.n, n);
    for (i = 0; i < n; i++) {
        ck_assert_uint_eq(b.items[i].index, i);
        if (errors[i] == NULL) {
            ck_assert_msg(b.items[i].error == NULL, "item %zu: %s", i, b.items[i].error);
            valid++;
        } else {
            ck_assert_ptr_nonnull(b.items[i].error);
            ck_assert_str_eq(b.items[i].error, errors[i]);
        }
        if (raws != NULL) {
            ck_assert_uint_eq(b.items[i].raw_len, strlen(raws[i]));
            ck_assert(memcmp(b.items[i].raw, raws[i], b.items[i].raw_len) == 0);
        }
    }
    ck_assert_uint_eq(b.n_valid, valid);
    ev_batch_free(&b);
}

START_TEST(test_body_object)
{
    const char *errors[] = {NULL};
    const char *raws[] = {CR(1)};

    expect_batch("  " CR(1) "\n", 1, errors, raws);
}
END_TEST

START_TEST(test_body_array)
{
    const char *errors[] = {NULL, NULL, NULL};
    const char *raws[] = {CR(1), CR(2), CR(3)};

    expect_batch("[" CR(1) ",\n  " CR(2) " , " CR(3) "]", 3, errors, raws);
}
END_TEST

START_TEST(test_body_ndjson)
{
    const char *errors[] = {NULL, NULL, NULL};
    const char *raws[] = {CR(1), CR(2), CR(3)};

    expect_batch(CR(1) "\n" CR(2) "\r\n" CR(3) "\n", 3, errors, raws);
}
END_TEST

START_TEST(test_body_concatenated)
{
    const char *errors[] = {NULL, NULL, NULL};
    const char *raws[] = {CR(1), CR(2), CR(3)};

    expect_batch(CR(1) CR(2) CR(3), 3, errors, raws);
}
END_TEST

/* Objects and arrays mixed: indices count array elements. */
START_TEST(test_body_mixed)
{
    const char *errors[] = {NULL, NULL, "user_id: expected integer, got string", NULL, NULL};
    const char *raws[] = {CR(1), CR(2), CR("3"), CR(4), CR(5)};

    expect_batch(CR(1) " [" CR(2) "," CR("3") "]\n[]\n" CR(4) "[" CR(5) "]", 5, errors, raws);
}
END_TEST

START_TEST(test_body_empty)
{
    static const char *const bodies[] = {"", " ", "\n\r\n\t ", "\xef\xbb\xbf", "\xef\xbb\xbf \n"};
    struct ev_batch b = {0};
    size_t i;

    for (i = 0; i < N_ELEMS(bodies); i++) {
        ck_assert_int_eq(ev_parse_body(bodies[i], strlen(bodies[i]), NULL, &b), DP_ERR_INVALID);
        ck_assert_uint_eq(b.n, 0);
        ck_assert_uint_eq(b.n_valid, 0);
        ev_batch_free(&b);
    }
    /* An empty array is JSON but holds no event. */
    ck_assert_int_eq(ev_parse_body("[ ]", 3, NULL, &b), 0);
    ck_assert_uint_eq(b.n, 0);
    ev_batch_free(&b);
}
END_TEST

START_TEST(test_body_bom)
{
    const char *errors[] = {NULL};
    const char *raws[] = {CR(1)};

    expect_batch("\xef\xbb\xbf" CR(1), 1, errors, raws);
}
END_TEST

START_TEST(test_body_trailing_garbage)
{
    const char *errors[] = {NULL, "line 1 column 80: invalid JSON: invalid token near 'xyz'"};
    const char *raws[] = {CR(1), "xyz"};

    expect_batch(CR(1) " xyz", 2, errors, raws);
}
END_TEST

START_TEST(test_body_trailing_brace)
{
    const char *errors[] = {NULL, "line 1 column 77: invalid JSON: unexpected token near '}'"};
    const char *raws[] = {CR(1), "}"};

    expect_batch(CR(1) "}", 2, errors, raws);
}
END_TEST

/* A malformed line in the middle: one rejected event, the rest keep their indices. */
START_TEST(test_body_malformed_middle)
{
    const char *errors[] = {
        NULL,
        NULL,
        "line 3 column 43: invalid JSON: unexpected token near '}'",
        NULL,
        "line 5 column 4: invalid JSON: invalid token near 'oops'",
        NULL,
    };
    const char *raws[] = {
        CR(1), CR(2),       "{\"event_name\": \"crash_report\", \"user_id\": }",
        CR(4), "oops here", CR(6),
    };

    expect_batch(CR(1) "\n" CR(2) "\n{\"event_name\": \"crash_report\", \"user_id\": }\n" CR(
                     4) "\noops here\n" CR(6) "\n",
                 6, errors, raws);
}
END_TEST

/* A broken array is one malformed event, whatever elements parsed before the break. */
START_TEST(test_body_malformed_array)
{
    const char *errors[] = {
        NULL,
        "line 2 column 79: invalid JSON: ',' or ']' expected",
        NULL,
    };
    const char *raws[] = {CR(1), "[" CR(2) " " CR(3) "]", CR(4)};

    expect_batch(CR(1) "\n[" CR(2) " " CR(3) "]\n" CR(4), 3, errors, raws);
}
END_TEST

START_TEST(test_body_unterminated)
{
    const char *errors[] = {
        NULL,
        "line 3 column 13: invalid JSON: unexpected token near end of file",
    };
    expect_batch(CR(1) "\n[" CR(2) ",\n             ", 2, errors, NULL);
}
END_TEST

/* The error of a malformed value spanning lines names the line where parsing failed. */
START_TEST(test_body_multiline_error)
{
    const char *errors[] = {
        "line 3 column 3: invalid JSON: string or '}' expected near ']'",
        NULL,
    };
    const char *raws[] = {"{\n  \"a\": 1,\n  ]", CR(9)};

    expect_batch("{\n  \"a\": 1,\n  ]\n" CR(9), 2, errors, raws);
}
END_TEST

/* Columns count characters, not bytes. */
START_TEST(test_body_column_utf8)
{
    const char *errors[] = {"line 1 column 12: invalid JSON: string or '}' expected near 'x'"};

    expect_batch("{\"\xc3\xa9\xc3\xa9\xc3\xa9\": 1, x}", 1, errors, NULL);
}
END_TEST

START_TEST(test_body_typed_url)
{
    const struct ev_type *t = ev_lookup("product", 7);
    const char *body = "{\"id\": 1}\n{\"id\": 2, \"event_name\": \"product\"}\n{\"x\": 1}";
    struct ev_batch b = {0};

    ck_assert_int_eq(ev_parse_body(body, strlen(body), t, &b), 0);
    ck_assert_uint_eq(b.n, 3);
    ck_assert_uint_eq(b.n_valid, 2);
    ck_assert_ptr_eq(b.items[0].type, t);
    ck_assert_ptr_eq(b.items[2].type, t);
    ck_assert_str_eq(b.items[2].error, "id: required field missing");
    ev_batch_free(&b);
}
END_TEST

/* 20 MB: one data_sample of 1,000,000 numbers parses, validates and encodes. */
START_TEST(test_body_big_data_sample)
{
    const size_t count = 1000000;
    size_t cap = count * 24 + 256;
    char *body = malloc(cap);
    struct ev_batch b = {0};
    struct ev_stored ev = {0};
    struct ev_buf out = {0};
    char err[EV_ERR_MAX];
    size_t len;
    size_t i;
    double sum = 0;
    char *n_col;
    char *mean_col;

    ck_assert_ptr_nonnull(body);
    len = (size_t)sprintf(body, "{\"event_name\": \"data_sample\", "
                                "\"time_stamp\": \"2024-05-01T12:00:00.5+02:00\", \"data\": [");
    for (i = 0; i < count; i++) {
        double x = 12345678.0 + (double)(i % 1000) * 0.001953125;

        sum += x;
        len += (size_t)sprintf(body + len, "%s%.11f", i ? "," : "", x);
    }
    len += (size_t)sprintf(body + len, "]}");
    ck_assert_uint_gt(len, 20 * 1000 * 1000);
    ck_assert_int_eq(ev_parse_body(body, len, NULL, &b), 0);
    ck_assert_uint_eq(b.n, 1);
    ck_assert_msg(b.items[0].error == NULL, "%s", b.items[0].error);
    ck_assert_uint_eq(b.items[0].raw_len, len);
    ev.json = b.items[0].raw;
    ev.json_len = b.items[0].raw_len;
    ck_assert_int_eq(ev_encode(b.items[0].type, &ev, &out, err), 0);
    ck_assert_ptr_nonnull(out.data);
    out.data[out.len - 1] = '\0';
    n_col = column(out.data, 2);
    mean_col = column(out.data, 3);
    ck_assert_str_eq(n_col, "1000000");
    ck_assert_double_eq_tol(strtod(mean_col, NULL), sum / (double)count, 1e-6);
    free(n_col);
    n_col = column(out.data, 1);
    ck_assert_str_eq(n_col, "2024-05-01 10:00:00.500000+00");
    free(n_col);
    free(mean_col);
    ev_buf_free(&out);
    ev_batch_free(&b);
    free(body);
}
END_TEST

struct row_case {
    const char *type;
    const char *json;
    const char *row;
};

static const struct row_case rows[] = {
    {"crash_report",
     "{\"event_name\": \"crash_report\",\"user_id\": 888,\"timestamp\": 1000,"
     "\"message\": \"have_fun\"}",
     TEST_UUID_TEXT
     "\tcrash_report\t888\t1970-01-01 00:16:40.000000+00\thave_fun\t" TEST_RECEIVED_TEXT
     "\t\\N\t\\N\t\\N\n"},
    {"crash_report",
     "{\"user_id\": -1, \"timestamp\": 253402300799, "
     "\"message\": \"a\\tb\\nc\\rd\\\\e\\\"f \\u00e9\\ud83d\\ude00\\b\\f\"}",
     TEST_UUID_TEXT "\tcrash_report\t-1\t9999-12-31 23:59:59.000000+00\t"
                    "a\\tb\\nc\\rd\\\\e\"f \xc3\xa9\xf0\x9f\x98\x80\\b\\f\t" TEST_RECEIVED_TEXT
                    "\t\\N\t\\N\t\\N\n"},
    {"ad_event",
     "{\"ip_address\": \"10.1.2.3\", \"user_agent\": \"UA\\t1\", \"referring_url\": "
     "\"https://ex.com/\", \"advertiser_id\": \"adv\", \"metadata\": "
     "{ \"k\": \"v\\\\n}\" , \"n\": 1.50 }}",
     TEST_UUID_TEXT "\t10.1.2.3\tUA\\t1\thttps://ex.com/\tadv\t"
                    "{ \"k\": \"v\\\\\\\\n}\" , \"n\": 1.50 }\t" TEST_RECEIVED_TEXT
                    "\t\\N\t\\N\t\\N\n"},
    {"ad_event",
     "{\"ip_address\": \"10.1.2.3\", \"user_agent\": \"\", \"referring_url\": \"http://h\", "
     "\"advertiser_id\": \"metadata\"}",
     TEST_UUID_TEXT "\t10.1.2.3\t\thttp://h\tmetadata\t{}\t" TEST_RECEIVED_TEXT
                    "\t\\N\t\\N\t\\N\n"},
    /* The key written with an escape is still "metadata"; a string value "metadata" is not. */
    {"ad_event",
     "{\"user_agent\": \"metadata\", \"meta\\u0064ata\": {\"a\": [1, {\"b\": \"]}\"}]}, "
     "\"ip_address\": \"1.1.1.1\", \"referring_url\": \"http://h\", \"advertiser_id\": \"x\"}",
     TEST_UUID_TEXT
     "\t1.1.1.1\tmetadata\thttp://h\tx\t{\"a\": [1, {\"b\": \"]}\"}]}\t" TEST_RECEIVED_TEXT
     "\t\\N\t\\N\t\\N\n"},
    {"user_login",
     "{\"user_id\": \"u1\", \"timestamp\": \"1700000000\", \"ip\": \"::1\", \"locale\": null, "
     "\"device_id\": \"d\\n1\"}",
     TEST_UUID_TEXT "\tu1\t\\N\t\\N\t::1\t\\N\td\\n1\t2023-11-14 22:13:20.000000+00\t" TEST_NOW_TEXT
                    "\t" TEST_RECEIVED_TEXT "\t\\N\t\\N\t\\N\n"},
    {"user_login",
     "{\"event_name\": \"user_login\", \"user_id\": \"u\", \"timestamp\": 0, \"app_version\": "
     "\"2\", \"device_type\": \"tv\", \"ip\": \"1.2.3.4\", \"locale\": \"de\", "
     "\"device_id\": \"x\"}",
     TEST_UUID_TEXT "\tu\t2\ttv\t1.2.3.4\tde\tx\t1970-01-01 00:00:00.000000+00\t" TEST_NOW_TEXT
                    "\t" TEST_RECEIVED_TEXT "\t\\N\t\\N\t\\N\n"},
    {"product", "{\"id\": \"sku\\t1\", \"p\": 1}",
     "sku\\t1\t{\"id\": \"sku\\\\t1\", \"p\": 1}\t" TEST_RECEIVED_TEXT "\t77\t\\N\n"},
    {"product", "{\"id\": -12}", "-12\t{\"id\": -12}\t" TEST_RECEIVED_TEXT "\t77\t\\N\n"},
    {"data_sample",
     "{\"time_stamp\": \"2024-03-01T01:30:00+02:00\", \"data\": [2, 4, 4, 4, 5, 5, 7, 9]}",
     TEST_UUID_TEXT "\t2024-02-29 23:30:00.000000+00\t8\t5\t2\t"
                    "{\"time_stamp\": \"2024-03-01T01:30:00+02:00\", \"data\": [2, 4, 4, 4, 5, 5, "
                    "7, 9]}\t" TEST_RECEIVED_TEXT "\t\\N\t\\N\t\\N\n"},
    {"data_sample", "{\"time_stamp\": \"1999-12-31T23:59:59.9999995Z\",\n \"data\": [1.5]}",
     TEST_UUID_TEXT
     "\t2000-01-01 00:00:00.000000+00\t1\t1.5\t0\t"
     "{\"time_stamp\": \"1999-12-31T23:59:59.9999995Z\",\\n \"data\": [1.5]}\t" TEST_RECEIVED_TEXT
     "\t\\N\t\\N\t\\N\n"},
    {"data_sample", "{\"time_stamp\": \"0001-01-01T00:30:00+00:30\", \"data\": [-3]}",
     TEST_UUID_TEXT
     "\t0001-01-01 00:00:00.000000+00\t1\t-3\t0\t"
     "{\"time_stamp\": \"0001-01-01T00:30:00+00:30\", \"data\": [-3]}\t" TEST_RECEIVED_TEXT
     "\t\\N\t\\N\t\\N\n"},
    {"data_sample",
     "{\"time_stamp\": \"9999-12-31T23:59:59.999999-00:00\", \"data\": [1e300, -1e300]}",
     TEST_UUID_TEXT "\t9999-12-31 23:59:59.999999+00\t2\t0\t1.0000000000000001e+300\t"
                    "{\"time_stamp\": \"9999-12-31T23:59:59.999999-00:00\", \"data\": [1e300, "
                    "-1e300]}\t" TEST_RECEIVED_TEXT "\t\\N\t\\N\t\\N\n"},
};

START_TEST(test_encode_row)
{
    const struct row_case *c = &rows[_i];
    char err[EV_ERR_MAX];
    char *row;
    int rc;

    row = encode(c->type, c->json, &rc, err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(row, c->row);
    free(row);
}
END_TEST

/*
 * A keyed row carries its key and the digest the server compared repeats with: SHA-256 of
 * the event's bytes without the whitespace around them, a bytea in both COPY formats.
 */
START_TEST(test_encode_row_keyed)
{
    static const char json[] = " {\"user_id\": 1, \"timestamp\": 2, \"message\": \"m\"}\n";
    static const char digest_hex[] =
        "c74e6fe5103adfb7c8d72eb546e3293ff1ec590753c03d3a7308d59844e8ee43";
    const struct ev_type *t = ev_lookup("crash_report", 12);
    struct ev_stored ev = {
        .json = json,
        .json_len = sizeof(json) - 1,
        .key = "k-1",
        .key_len = 3,
        .received_us = TEST_RECEIVED_US,
        .now_us = TEST_NOW_US,
        .seq = 77,
    };
    struct ev_buf b = {0};
    char err[EV_ERR_MAX] = "";
    char want[256];
    uint8_t digest[EV_DIGEST_LEN];

    memcpy(ev.uuid, fixed_uuid, 16);
    ck_assert_int_eq(ev_encode(t, &ev, &b, err), 0);
    snprintf(want, sizeof(want), "\tk-1\t\\\\x%s\t\\N\n", digest_hex);
    ck_assert_uint_ge(b.len, strlen(want));
    ck_assert_mem_eq(b.data + b.len - strlen(want), want, strlen(want));
    ev_buf_free(&b);
    /* Binary: the key's 4-byte length and bytes, the digest's, then source's NULL (-1). */
    b.binary = true;
    ck_assert_int_eq(ev_encode(t, &ev, &b, err), 0);
    ev_digest(json, sizeof(json) - 1, digest);
    ck_assert_uint_ge(b.len, 4 + 3 + 4 + EV_DIGEST_LEN + 4);
    ck_assert_mem_eq(b.data + b.len - (4 + 3 + 4 + EV_DIGEST_LEN + 4), "\0\0\0\3k-1\0\0\0\40", 11);
    ck_assert_mem_eq(b.data + b.len - (EV_DIGEST_LEN + 4), digest, EV_DIGEST_LEN);
    ck_assert_mem_eq(b.data + b.len - 4, "\377\377\377\377", 4);
    ev_buf_free(&b);
}
END_TEST

START_TEST(test_encode_rejects)
{
    struct ev_buf out = {0};
    char err[EV_ERR_MAX];
    char *row;
    int rc;

    row = encode("crash_report", "{\"user_id\": 1}", &rc, err);
    ck_assert_int_eq(rc, DP_ERR_INVALID);
    ck_assert_str_eq(err, "timestamp: required field missing");
    ck_assert_str_eq(row, "");
    free(row);
    row = encode("crash_report", "{\"user_id\": ", &rc, err);
    ck_assert_int_eq(rc, DP_ERR_INVALID);
    ck_assert_str_eq(err, "stored event does not parse: invalid JSON: unexpected token near end of "
                          "file");
    free(row);
    row = encode("product", "{\"event_name\": \"ad_event\", \"id\": 1}", &rc, err);
    ck_assert_int_eq(rc, DP_ERR_INVALID);
    ck_assert_str_eq(err, "event_name: does not match the type \"product\"");
    free(row);
    row = encode("product", "[{\"id\": 1}]", &rc, err);
    ck_assert_int_eq(rc, DP_ERR_INVALID);
    ck_assert_str_eq(err, "event: expected object, got array");
    free(row);
    /* A failed encode leaves what the buffer held before. */
    ck_assert_int_eq(ev_buf_put(&out, "keep", 4), 0);
    {
        struct ev_stored ev = {.json = "{\"id\": 1.5}", .json_len = 11};

        ck_assert_int_eq(ev_encode(ev_lookup("product", 7), &ev, &out, err), DP_ERR_INVALID);
    }
    ck_assert_uint_eq(out.len, 4);
    ev_buf_free(&out);
}
END_TEST

/*
 * Welford against a two-pass reference in long double, on data where the
 * textbook sum-of-squares formula loses every digit: 1e9 plus small noise.
 */
START_TEST(test_welford_large_offset)
{
    const size_t count = 100000;
    char *body = malloc(count * 32 + 128);
    double *xs = malloc(count * sizeof(*xs));
    long double mean_ref = 0;
    long double m2_ref = 0;
    double naive_sum = 0;
    double naive_sq = 0;
    double naive_std;
    double std_ref;
    uint32_t seed = 12345;
    char err[EV_ERR_MAX];
    size_t len;
    size_t i;
    char *row;
    char *mean_col;
    char *std_col;
    int rc;

    ck_assert_ptr_nonnull(body);
    ck_assert_ptr_nonnull(xs);
    len = (size_t)sprintf(body, "{\"time_stamp\": \"2024-01-01T00:00:00Z\", \"data\": [");
    for (i = 0; i < count; i++) {
        seed = seed * 1664525u + 1013904223u;
        xs[i] = 1e9 + ((double)(seed >> 8) / 16777216.0 - 0.5) * 1e-3;
        len += (size_t)sprintf(body + len, "%s%.17g", i ? "," : "", xs[i]);
        naive_sum += xs[i];
        naive_sq += xs[i] * xs[i];
    }
    sprintf(body + len, "]}");
    for (i = 0; i < count; i++) {
        mean_ref += xs[i];
    }
    mean_ref /= (long double)count;
    for (i = 0; i < count; i++) {
        m2_ref += (xs[i] - mean_ref) * (xs[i] - mean_ref);
    }
    std_ref = (double)sqrtl(m2_ref / (long double)count);
    naive_std = sqrt(fabs(naive_sq / (double)count - pow(naive_sum / (double)count, 2)));
    /* The data really is hard: the naive formula is off by orders of magnitude. */
    ck_assert_double_gt(fabs(naive_std - std_ref) / std_ref, 1.0);

    row = encode("data_sample", body, &rc, err);
    ck_assert_msg(rc == 0, "%s", err);
    mean_col = column(row, 3);
    std_col = column(row, 4);
    ck_assert_msg(fabs(strtod(mean_col, NULL) - (double)mean_ref) / 1e9 < 1e-15,
                  "mean %s, reference %.17Lg", mean_col, mean_ref);
    ck_assert_msg(fabs(strtod(std_col, NULL) - std_ref) / std_ref < 1e-9, "std %s, reference %.17g",
                  std_col, std_ref);
    free(mean_col);
    free(std_col);
    free(row);
    free(xs);
    free(body);
}
END_TEST

START_TEST(test_copy_escaping)
{
    struct ev_buf b = {0};
    const char in[] = "a\\b\tc\nd\re\bf\fg\vh\"i'j\x01k\xf0\x9f\x98\x80";
    const char want[] = "a\\\\b\\tc\\nd\\re\\bf\\fg\\vh\"i'j\x01k\xf0\x9f\x98\x80";

    ck_assert_int_eq(ev_buf_put_copy_text(&b, in, sizeof(in) - 1), 0);
    ck_assert_uint_eq(b.len, sizeof(want) - 1);
    ck_assert(memcmp(b.data, want, b.len) == 0);
    b.len = 0;
    ck_assert_int_eq(ev_buf_put_copy_text(&b, "\\.", 2), 0);
    ck_assert(b.len == 3 && memcmp(b.data, "\\\\.", 3) == 0);
    b.len = 0;
    ck_assert_int_eq(ev_buf_put_copy_text(&b, "", 0), 0);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(ev_buf_put_copy_bytea(&b, "\x00\xff\x10 ", 4), 0);
    ck_assert_uint_eq(b.len, 11);
    ck_assert(memcmp(b.data, "\\\\x00ff1020", 11) == 0);
    ev_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ev_buf_free(NULL);
}
END_TEST

START_TEST(test_copy_escaping_large)
{
    struct ev_buf b = {0};
    size_t n = 3 * 1000 * 1000;
    char *s = malloc(n);
    size_t i;
    size_t specials = 0;

    ck_assert_ptr_nonnull(s);
    for (i = 0; i < n; i++) {
        s[i] = "ab\\c\td\ne"[i % 8];
        specials += s[i] == '\\' || s[i] == '\t' || s[i] == '\n';
    }
    ck_assert_int_eq(ev_buf_put(&b, "x", 1), 0);
    ck_assert_int_eq(ev_buf_put_copy_text(&b, s, n), 0);
    ck_assert_uint_eq(b.len, 1 + n + specials);
    ck_assert(memcmp(b.data, "xab\\\\c\\td\\nea", 13) == 0);
    ev_buf_free(&b);
    free(s);
}
END_TEST

START_TEST(test_timestamps)
{
    static const struct {
        int64_t us;
        const char *text;
    } cases[] = {
        {0, "1970-01-01 00:00:00.000000+00"},
        {-1, "1969-12-31 23:59:59.999999+00"},
        {INT64_C(951782400000000), "2000-02-29 00:00:00.000000+00"},
        {INT64_C(951868799999999), "2000-02-29 23:59:59.999999+00"},
        {INT64_C(253402300799999999), "9999-12-31 23:59:59.999999+00"},
        {INT64_C(-62135596800000000), "0001-01-01 00:00:00.000000+00"},
        {INT64_C(-62135596800000001), "0001-12-31 23:59:59.999999+00 BC"},
        {INT64_C(253402300800000000), "10000-01-01 00:00:00.000000+00"},
        {TEST_RECEIVED_US, TEST_RECEIVED_TEXT},
    };
    struct ev_buf b = {0};

    ck_assert_int_eq(ev_buf_put_timestamp(&b, cases[_i].us), 0);
    ck_assert_uint_eq(b.len, strlen(cases[_i].text));
    ck_assert(memcmp(b.data, cases[_i].text, b.len) == 0);
    ev_buf_free(&b);
}
END_TEST

START_TEST(test_uuid)
{
    static const char *const bad[] = {
        "01020304-0506-0708-090a-0b0c0d0e0f1",    "01020304-0506-0708-090a-0b0c0d0e0f100",
        "01020304-0506-0708-090a-0b0c0d0e0f1g",   "0102030405-06-0708-090a-0b0c0d0e0f10",
        "01020304-0506-0708-090a_0b0c0d0e0f10",   "",
        "{01020304-0506-0708-090a-0b0c0d0e0f10}",
    };
    uint8_t u[16];
    struct ev_buf b = {0};
    size_t i;

    ck_assert_int_eq(ev_uuid_parse(TEST_UUID_TEXT, u), 0);
    ck_assert(memcmp(u, fixed_uuid, 16) == 0);
    ck_assert_int_eq(ev_uuid_parse("01020304-0506-0708-090A-0B0C0D0E0F10", u), 0);
    ck_assert(memcmp(u, fixed_uuid, 16) == 0);
    ck_assert_int_eq(ev_buf_put_uuid(&b, u), 0);
    ck_assert(b.len == 36 && memcmp(b.data, TEST_UUID_TEXT, 36) == 0);
    for (i = 0; i < N_ELEMS(bad); i++) {
        ck_assert_msg(ev_uuid_parse(bad[i], u) == DP_ERR_INVALID, "%s", bad[i]);
    }
    ck_assert_int_eq(ev_uuid_parse(NULL, u), DP_ERR_INVALID);
    ev_buf_free(&b);
}
END_TEST

START_TEST(test_registry_walk)
{
    char names[256];
    char err[EV_ERR_MAX];
    size_t i;
    size_t j;

    ck_assert_uint_eq(ev_registry_len, 12);
    for (i = 0; i < ev_registry_len; i++) {
        const struct ev_type *t = ev_registry[i];
        char ddl_head[128];
        size_t valid = 0;
        size_t invalid = 0;

        ck_assert_ptr_nonnull(t);
        ck_assert_ptr_nonnull(t->name);
        ck_assert_ptr_nonnull(t->table);
        ck_assert_ptr_nonnull(t->ddl);
        ck_assert_ptr_nonnull(t->copy_columns);
        ck_assert_ptr_nonnull(t->get_sql);
        ck_assert_ptr_nonnull(t->validate);
        ck_assert_ptr_nonnull(t->encode_row);
        snprintf(ddl_head, sizeof(ddl_head), "CREATE TABLE IF NOT EXISTS %s (", t->table);
        ck_assert_msg(strncmp(t->ddl, ddl_head, strlen(ddl_head)) == 0, "%s", t->ddl);
        ck_assert_int_eq(t->copy_columns[0], '(');
        ck_assert_ptr_nonnull(strstr(t->get_sql, "$1"));
        if (t->load == EV_LOAD_UPSERT) {
            ck_assert_ptr_nonnull(t->stage_ddl);
            ck_assert_ptr_nonnull(t->upsert_sql);
        } else {
            ck_assert_int_eq(t->load, EV_LOAD_APPEND);
            ck_assert_ptr_null(t->stage_ddl);
            ck_assert_ptr_null(t->upsert_sql);
        }
        ck_assert_ptr_eq(ev_lookup(t->name, strlen(t->name)), t);
        for (j = 0; j < i; j++) {
            ck_assert_str_ne(ev_registry[j]->name, t->name);
            ck_assert_str_ne(ev_registry[j]->table, t->table);
        }
        /* Every type has its samples: some valid, at least ten invalid. */
        for (j = 0; j < N_ELEMS(samples); j++) {
            if (strcmp(samples[j].type, t->name) == 0) {
                valid += samples[j].error == NULL;
                invalid += samples[j].error != NULL;
            }
        }
        ck_assert_uint_ge(valid, 2);
        ck_assert_uint_ge(invalid, 10);
    }
    ck_assert_ptr_null(ev_lookup("crash_report ", 13));
    ck_assert_ptr_null(ev_lookup("crash_repor", 11));
    ck_assert_ptr_null(ev_lookup("", 0));
    ck_assert_ptr_null(ev_lookup(NULL, 0));
    ck_assert_ptr_nonnull(ev_lookup("crash_report!", 12));
    /* What an "unknown event type" answer lists: the registry, cut with "..." to fit. */
    ev_type_names(names, sizeof(names));
    ck_assert_str_eq(names, "crash_report, ad_event, user_login, product, data_sample, "
                            "identifies, tracks, pages, screens, groups, aliases, users");
    ev_type_names(names, 30);
    ck_assert_str_eq(names, "crash_report, ad_event, ...");
    ev_unknown_type(err, "crash", 5);
    ck_assert_str_eq(err, "unknown event type \"crash\" (valid types: crash_report, ad_event, "
                          "user_login, product, data_sample, identifies, tracks, pages, "
                          "screens, groups, aliases, users)");
}
END_TEST

/*
 * Each type's field table is what GET /v1/types and the OpenAPI document show, so it must be
 * the truth: every field named once with a type of the declared-types vocabulary, and its
 * validator must follow it - removing a required field gives "required field missing",
 * removing an optional one keeps the event valid, a field not in the table is rejected unless
 * the type keeps unknown fields.
 */
START_TEST(test_field_tables)
{
    static const char *const words[] = {
        "string", "integer", "number", "boolean", "timestamp",
        "ip",     "url",     "uuid",   "object",  "array",
    };
    const struct ev_type *t = ev_registry[_i];
    const struct sample *valid = NULL;
    json_error_t jerr;
    json_t *obj;
    char err[EV_ERR_MAX];
    char want[EV_ERR_MAX];
    size_t i;
    size_t j;

    ck_assert_uint_gt(t->n_fields, 0);
    ck_assert_ptr_nonnull(t->fields);
    for (i = 0; i < t->n_fields; i++) {
        const struct ev_field *f = &t->fields[i];
        const char *w = f->type;

        ck_assert_ptr_nonnull(f->name);
        ck_assert_ptr_nonnull(f->check);
        ck_assert_ptr_nonnull(w);
        while (*w != '\0') {
            size_t n = strcspn(w, "|");
            bool known = false;

            for (j = 0; j < N_ELEMS(words); j++) {
                known = known || (strlen(words[j]) == n && strncmp(words[j], w, n) == 0);
            }
            ck_assert_msg(known, "%s.%s: type %s", t->name, f->name, f->type);
            w += n + (w[n] == '|');
        }
        for (j = 0; j < i; j++) {
            ck_assert_str_ne(t->fields[j].name, f->name);
        }
    }
    /* The fullest valid sample: the one with the most fields. */
    for (i = 0; i < N_ELEMS(samples); i++) {
        if (strcmp(samples[i].type, t->name) == 0 && samples[i].error == NULL &&
            (valid == NULL || strlen(samples[i].json) > strlen(valid->json))) {
            valid = &samples[i];
        }
    }
    ck_assert_ptr_nonnull(valid);
    for (i = 0; i < t->n_fields; i++) {
        const struct ev_field *f = &t->fields[i];

        obj = json_loads(valid->json, 0, &jerr);
        ck_assert_ptr_nonnull(obj);
        if (json_object_del(obj, f->name) != 0) {
            json_decref(obj);
            continue;
        }
        if (f->required) {
            snprintf(want, sizeof(want), "%s: required field missing", f->name);
            ck_assert_int_eq(t->validate(t, obj, err), DP_ERR_INVALID);
            ck_assert_str_eq(err, want);
        } else {
            ck_assert_int_eq(t->validate(t, obj, err), 0);
        }
        json_decref(obj);
    }
    obj = json_loads(valid->json, 0, &jerr);
    json_object_set_new(obj, "zz_not_a_field", json_integer(1));
    if (t->open) {
        ck_assert_int_eq(t->validate(t, obj, err), 0);
    } else {
        ck_assert_int_eq(t->validate(t, obj, err), DP_ERR_INVALID);
        ck_assert_str_eq(err, "zz_not_a_field: unknown field");
    }
    json_decref(obj);
}
END_TEST

/* Inputs the fuzzer or review found troublesome; each must give the stated result. */
static const struct {
    const char *body;
    size_t len; /* 0: strlen */
    size_t n;   /* items with the URL type product */
    size_t n_valid;
} regressions[] = {
    /* Error text quoting raw bytes must stay valid UTF-8 for the JSON answer. */
    {"{\"\xff\xfe\": 1}", 0, 1, 0},
    /* A NUL byte in the body: its own malformed event, parsing goes on at the next line. */
    {"{\"id\": 1}\0{\"id\": 2}\n{\"id\": 3}", 29, 3, 2},
    /*
     * Fuzzer: jansson's buffer reader skips a NUL byte without counting it,
     * so "{... 7\0}" parsed as a whole object whose raw bytes lacked the '}':
     * accepted, then impossible to encode.
     */
    {"{\"event_name\": \"crash_repooduct\", \"id\":\x0a"
     "3 }{ \"\\u0000\"\x86 rt\","
     "\"u{\"e0Z\", \"a\"}\x0a{\"et_name\": \"product\", \"id\":\x0a"
     "7 }{ \"\\u0000"
     "\", \"b\":]}\x0a"
     "age\": \"a\"e0Z\", \"a\"}\x0a{\"et_name\": \"product\", \"id"
     "\":\x0a"
     "7\x00}{ \"\\u0000\"ple\", ta\":\xa0[1]}\x0a",
     203, 6, 1},
    /* Deep nesting is refused by the parser, not by the stack. */
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 0, 1, 0},
};

/* Whatever the URL type: every accepted event encodes, every error is valid UTF-8. */
static void
check_batch_invariants(const char *body, size_t len, const struct ev_type *t)
{
    struct ev_batch b = {0};
    size_t i;

    ck_assert_int_eq(ev_parse_body(body, len, t, &b), 0);
    for (i = 0; i < b.n; i++) {
        const struct ev_item *it = &b.items[i];

        if (it->error != NULL) {
            json_t *s = json_string(it->error);

            ck_assert_msg(s != NULL, "error is not UTF-8: %s", it->error);
            json_decref(s);
        } else {
            struct ev_stored ev = {.json = it->raw, .json_len = it->raw_len};
            struct ev_buf out = {0};
            char err[EV_ERR_MAX] = "";

            ck_assert_msg(ev_encode(it->type, &ev, &out, err) == 0, "item %zu: %s", i, err);
            ev_buf_free(&out);
        }
    }
    ev_batch_free(&b);
}

START_TEST(test_regressions)
{
    const struct ev_type *t = ev_lookup("product", 7);
    size_t len = regressions[_i].len ? regressions[_i].len : strlen(regressions[_i].body);
    struct ev_batch b = {0};
    size_t i;

    ck_assert_int_eq(ev_parse_body(regressions[_i].body, len, t, &b), 0);
    ck_assert_uint_eq(b.n, regressions[_i].n);
    ck_assert_uint_eq(b.n_valid, regressions[_i].n_valid);
    ev_batch_free(&b);
    check_batch_invariants(regressions[_i].body, len, NULL);
    for (i = 0; i < ev_registry_len; i++) {
        check_batch_invariants(regressions[_i].body, len, ev_registry[i]);
    }
}
END_TEST

START_TEST(test_nul_byte)
{
    const char body[] = "{\"id\": 7\0}\n{\"id\": 8}";
    struct ev_batch b = {0};
    struct ev_stored ev = {.json = "{\"id\": 7\0}", .json_len = 10};
    struct ev_buf out = {0};
    char err[EV_ERR_MAX];

    ck_assert_int_eq(ev_parse_body(body, sizeof(body) - 1, ev_lookup("product", 7), &b), 0);
    ck_assert_uint_eq(b.n, 2);
    ck_assert_str_eq(b.items[0].error, "line 1 column 9: invalid JSON: NUL byte");
    ck_assert_uint_eq(b.items[0].raw_len, 10);
    ck_assert_ptr_null(b.items[1].error);
    ck_assert_uint_eq(b.items[1].index, 1);
    ev_batch_free(&b);
    ck_assert_int_eq(ev_encode(ev_lookup("product", 7), &ev, &out, err), DP_ERR_INVALID);
    ck_assert_str_eq(err, "stored event does not parse: invalid JSON: NUL byte");
    ck_assert_uint_eq(out.len, 0);
}
END_TEST

/*
 * The fast JSON reader against jansson: when it accepts, jansson accepts the
 * same value ending at the same byte; where it must give up, it does.
 */
static const struct {
    const char *text;
    bool fast; /* the fast reader handles it */
} fast_cases[] = {
    {"{\"a\": [1, -2, 3.5e2, true, false, null, \"x\"], \"b\": {}}", true},
    {"  {\"k\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}  ", true},
    {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", true},
    {"-0", true},
    {"0", true},
    {"-9223372036854775808", true},
    {"9223372036854775807", true},
    {"9223372036854775808", false},
    {"-9223372036854775809", false},
    {"1e400", false},
    {"1e-400", true},
    {"0.1", true},
    {"123abc", true},
    {"[1]x", true},
    {"true", true},
    {"truex", false},
    {"true\xff", false},
    {"1\xff", false},
    {"1\xc3", false},
    {"01", false},
    {"1.", false},
    {".5", false},
    {"-", false},
    {"1e", false},
    {"1e+", false},
    {"[1,]", false},
    {"{,}", false},
    {"{\"a\":1,}", false},
    {"{\"a\":1,\"a\":2}", false},
    {"{\"a\" 1}", false},
    {"\"\\u0000\"", false},
    {"{\"\\u0000\": 1}", false},
    {"\"\\ud83d\"", false},
    {"\"\\ude00\"", false},
    {"\"\\ud83d\\u0041\"", false},
    {"\"\\u12\"", false},
    {"\"\\x\"", false},
    {"\"\xed\xa0\x80\"", false},
    {"\"\xf4\x90\x80\x80\"", false},
    {"\"\xc0\xaf\"", false},
    {"\"tab\there\"", false},
    {"\"unterminated", false},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", false},
    {"", false},
    {"nul", false},
};

START_TEST(test_fast_json)
{
    const char *text = fast_cases[_i].text;
    size_t n = strlen(text);
    size_t end = 0;
    json_error_t je;
    json_t *fast = ev_json_fast(text, n, &end);
    json_t *ref =
        json_loadb(text, n, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);

    ck_assert_msg((fast != NULL) == fast_cases[_i].fast, "%s: fast reader %s", text,
                  fast ? "accepted" : "gave up");
    if (fast != NULL) {
        ck_assert_msg(ref != NULL, "%s: jansson rejects: %s", text, je.text);
        ck_assert(json_equal(fast, ref));
        ck_assert_uint_eq(end, (size_t)je.position);
    }
    json_decref(fast);
    json_decref(ref);
}
END_TEST

/* ev_json_load takes exactly what json_loadb without JSON_DECODE_ANY takes, the same value. */
static const char *const load_cases[] = {
    "{\"a\": [1, 2.5, \"x\"], \"b\": {}}",
    " [1, {\"c\": null}]\r\n\t",
    "{\"a\": 1} x",
    "{\"a\": 1}\n{\"b\": 2}",
    "{\"a\": 1, \"a\": 2}",
    "\"a string\"",
    "1",
    "{\"n\": 9223372036854775808}",
    "{\"deep\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    "{\"a\": 1",
    "",
};

START_TEST(test_json_load)
{
    const char *text = load_cases[_i];
    json_error_t je_ref;
    json_error_t je;
    json_t *ref = json_loadb(text, strlen(text), JSON_REJECT_DUPLICATES, &je_ref);
    json_t *v = ev_json_load(text, strlen(text), &je);

    ck_assert_msg((v != NULL) == (ref != NULL), "%s: %s", text, v != NULL ? "taken" : je.text);
    if (v != NULL) {
        ck_assert(json_equal(v, ref));
    } else {
        ck_assert_str_eq(je.text, je_ref.text);
        ck_assert_int_eq(je.position, je_ref.position);
    }
    json_decref(v);
    json_decref(ref);
}
END_TEST

/* Nesting jansson would recurse into past a thread's stack is refused, where and why said. */
START_TEST(test_json_load_deep)
{
    char text[2 * 129 + 2];
    json_error_t je;
    json_t *v;

    memset(text, '[', 128);
    memset(text + 128, ']', 128);
    v = ev_json_load(text, 256, &je);
    ck_assert_ptr_nonnull(v);
    json_decref(v);
    text[0] = '\n';
    memset(text + 1, '[', 129);
    memset(text + 130, ']', 129);
    ck_assert_ptr_null(ev_json_load(text, 259, &je));
    ck_assert_str_eq(je.text, "nested deeper than 128 levels");
    ck_assert_int_eq(je.line, 2);
    ck_assert_int_eq(je.column, 129);
}
END_TEST

/* The members of an object, the elements of an array, as written; a member's value entered. */
START_TEST(test_json_cursor)
{
    const char *text = " {\"a\" : \"x\\\"}\" , \"b\\u0041\":[1, {\"c\": \"]\"}],\"n\":-1.5e3}";
    const char *want[][2] = {
        {"\"a\"", "\"x\\\"}\""}, {"\"b\\u0041\"", "[1, {\"c\": \"]\"}]"}, {"\"n\"", "-1.5e3"}};
    struct ev_json_cursor c;
    struct ev_json_span k;
    struct ev_json_span v;
    size_t i = 0;

    ck_assert(ev_json_cursor_open(&c, text, strlen(text)));
    while (ev_json_cursor_next(&c, &k, &v)) {
        ck_assert_uint_lt(i, N_ELEMS(want));
        ck_assert_uint_eq(k.len, strlen(want[i][0]));
        ck_assert(memcmp(text + k.off, want[i][0], k.len) == 0);
        ck_assert_uint_eq(v.len, strlen(want[i][1]));
        ck_assert(memcmp(text + v.off, want[i][1], v.len) == 0);
        i++;
    }
    ck_assert_uint_eq(i, N_ELEMS(want));

    text = "{\"x\": {\"batch\": 1}, \"batch\" : [ \"a,b\" , {\"d\": [2]} ], \"z\": 0}";
    ck_assert(ev_json_cursor_open(&c, text, strlen(text)));
    ck_assert(ev_json_cursor_enter(&c, "batch"));
    ck_assert(!c.object);
    ck_assert(ev_json_cursor_next(&c, &k, &v));
    ck_assert_uint_eq(k.len, 0);
    ck_assert(v.len == 5 && memcmp(text + v.off, "\"a,b\"", 5) == 0);
    ck_assert(ev_json_cursor_next(&c, &k, &v));
    ck_assert(v.len == 10 && memcmp(text + v.off, "{\"d\": [2]}", 10) == 0);
    ck_assert(!ev_json_cursor_next(&c, &k, &v));
    ck_assert(ev_json_cursor_open(&c, text, strlen(text)));
    ck_assert(!ev_json_cursor_enter(&c, "nothere"));
    ck_assert(!ev_json_cursor_open(&c, " 12", 3));
}
END_TEST

/*
 * A body read lazily (ev_json_load_lazy, then its array element by element) is taken only when
 * jansson takes it whole, and gives the same value; the common shapes are read to the end.
 */
static const struct {
    const char *text;
    bool finishes; /* read lazily to the end */
} lazy_cases[] = {
    {"{\"batch\": [1, {\"a\": 2}], \"x\": 3}", true},
    {" {\"x\": 1, \"batch\" : [ {\"a\": \"]\"} , \"\\\"]\" ] } ", true},
    {"{\"batch\": [[1], [2, [3]]], \"sentAt\": \"t\"}", true},
    {"{\"batch\": []}", true},
    {"{\"batch\": {\"a\": 1}}", true},
    {"{\"other\": [1]}", true},
    {"{\"batch\": [1 2]}", false},
    {"{\"batch\": [1,]}", false},
    {"{\"batch\": [,1]}", false},
    {"{\"batch\": [], \"batch\": [1]}", false},
    {"{\"batch\": [1], \"x\": 1, \"x\": 2}", false},
    {"{\"batch\": [{\"a\": 1}]", false},
    {"{\"batch\": [{\"a\": 1}]]}", false},
    {"{\"batch\": [{\"a\": 1}}]}", false},
    {"{\"batch\": [1]} x", false},
    {"{\"batch\": [1], \"y\": [1, 2}", false},
    {"{\"batch\": [9223372036854775808]}", false},
    {"{\"batch\": [1]}\x00", false},
    {"[{\"batch\": [1]}]", false},
};

START_TEST(test_json_load_lazy)
{
    const char *text = lazy_cases[_i].text;
    size_t n = strlen(text) + (_i == N_ELEMS(lazy_cases) - 2);
    struct ev_json_cursor c;
    struct ev_json_span span;
    json_error_t je;
    json_t *ref = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    json_t *arr = json_array();
    json_t *v = NULL;
    bool found = false;
    bool done = false;
    json_t *top = ev_json_load_lazy(text, n, "batch", &c, &found);

    if (top != NULL && found) {
        while ((v = ev_json_cursor_parse(&c, &span, &done)) != NULL) {
            ck_assert(span.len > 0 && span.off + span.len < n);
            json_array_append_new(arr, v);
        }
        done = done && json_array_size(arr) == c.total;
        json_object_set(top, "batch", arr);
    } else {
        done = top != NULL;
    }
    ck_assert_msg(done == lazy_cases[_i].finishes, "%s: lazily %s", text,
                  done ? "read" : "not read");
    if (done) {
        ck_assert_msg(ref != NULL, "%s: jansson rejects: %s", text, je.text);
        ck_assert(json_equal(top, ref));
    }
    json_decref(top);
    json_decref(arr);
    json_decref(ref);
}
END_TEST

START_TEST(test_json_minify)
{
    const char *text = " { \"a b\" :\t[1 , \"x \\\" y\\\\\" ]\r\n, \"c\": null } ";
    char out[64];
    size_t n = ev_json_minify(out, text, strlen(text));

    out[n] = '\0';
    ck_assert_str_eq(out, "{\"a b\":[1,\"x \\\" y\\\\\"],\"c\":null}");
}
END_TEST

/* An event added as its parsed value is checked as its bytes would be, keyed as they would. */
START_TEST(test_batch_add_value)
{
    const char *ok = "{\"user_id\": 1, \"timestamp\": 5, \"message\": \"m\", "
                     "\"idempotency_key\": \"k-1\"}";
    const char *bad = "{\"user_id\": \"x\", \"timestamp\": 5, \"message\": \"m\"}";
    const struct ev_type *t = ev_lookup("crash_report", 12);
    struct ev_batch b1;
    struct ev_batch b2;
    uint8_t digest[EV_DIGEST_LEN];
    json_t *v;

    memset(&b1, 0, sizeof(b1));
    memset(&b2, 0, sizeof(b2));
    for (int i = 0; i < 2; i++) {
        const char *text = i == 0 ? ok : bad;

        v = json_loads(text, 0, NULL);
        ck_assert_ptr_nonnull(v);
        ck_assert_int_eq(ev_batch_add_value(&b1, text, strlen(text), t, v), 0);
        ck_assert_int_eq(ev_batch_add(&b2, text, strlen(text), t, NULL), 0);
        json_decref(v);
    }
    ck_assert_uint_eq(b1.n, 2);
    ck_assert_uint_eq(b1.n_valid, 1);
    ck_assert_ptr_null(b1.items[0].error);
    ck_assert_str_eq(b1.items[0].key, "k-1");
    ck_assert(memcmp(b1.items[0].digest, b2.items[0].digest, EV_DIGEST_LEN) == 0);
    ck_assert_ptr_eq(b1.items[0].raw, ok);
    ck_assert_str_eq(b1.items[1].error, b2.items[1].error);
    /* A digest given stands; without one the item's bytes are digested. */
    memset(digest, 7, sizeof(digest));
    ck_assert_int_eq(ev_batch_set_key_digest(&b1, 0, "k-1", 3, "Idempotency-Key", digest), 0);
    ck_assert(memcmp(b1.items[0].digest, digest, EV_DIGEST_LEN) == 0);
    ck_assert_int_eq(ev_batch_set_key(&b1, 0, "k-1", 3, "Idempotency-Key"), 0);
    ck_assert(memcmp(b1.items[0].digest, b2.items[0].digest, EV_DIGEST_LEN) == 0);
    ev_batch_free(&b1);
    ev_batch_free(&b2);
}
END_TEST

/* ---- UUIDv7 ---- */

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
uuid_ms(const uint8_t u[16])
{
    uint64_t ms = 0;

    for (int i = 0; i < 6; i++) {
        ms = (ms << 8) | u[i];
    }
    return ms;
}

START_TEST(test_uuid7_format_monotonic)
{
    enum { N = 200000 };
    uint8_t(*u)[16] = malloc(N * sizeof(*u));
    uint64_t before = now_ms();
    uint64_t after;
    size_t same_ms = 0;

    ck_assert_ptr_nonnull(u);
    for (size_t i = 0; i < N; i++) {
        ev_uuid7(u[i]);
    }
    after = now_ms();
    for (size_t i = 0; i < N; i++) {
        ck_assert_uint_eq(u[i][6] >> 4, 7); /* version */
        ck_assert_uint_eq(u[i][8] >> 6, 2); /* variant 10 */
        ck_assert_uint_ge(uuid_ms(u[i]), before);
        ck_assert_uint_le(uuid_ms(u[i]), after);
        if (i > 0) {
            ck_assert_int_lt(memcmp(u[i - 1], u[i], 16), 0);
            same_ms += uuid_ms(u[i - 1]) == uuid_ms(u[i]);
        }
    }
    /* many ids share a millisecond: ordering there comes from the counter, not the clock */
    ck_assert_uint_gt(same_ms, 0);
    free(u);
}
END_TEST

#define UU_THREADS 4
#define UU_N 20000

static void *
uuid_thread(void *p)
{
    uint8_t(*u)[16] = p;

    for (size_t i = 0; i < UU_N; i++) {
        ev_uuid7(u[i]);
    }
    return NULL;
}

static int
cmp_uuid(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

START_TEST(test_uuid7_threads_and_fork)
{
    uint8_t(*u)[16] = malloc((UU_THREADS + 1) * UU_N * sizeof(*u));
    pthread_t th[UU_THREADS];
    int fds[2];
    pid_t pid;
    int status;
    size_t total = UU_THREADS * UU_N;

    ck_assert_ptr_nonnull(u);
    for (int i = 0; i < UU_THREADS; i++) {
        ck_assert_int_eq(pthread_create(&th[i], NULL, uuid_thread, u + i * UU_N), 0);
    }
    for (int i = 0; i < UU_THREADS; i++) {
        pthread_join(th[i], NULL);
        for (size_t j = 1; j < UU_N; j++) {
            ck_assert_int_lt(memcmp(u[i * UU_N + j - 1], u[i * UU_N + j], 16), 0);
        }
    }
    /* a forked child must not repeat what the parent generates at the same moment */
    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        uint8_t one[16];

        close(fds[0]);
        for (size_t i = 0; i < UU_N / 2; i++) {
            ev_uuid7(one);
            if (write(fds[1], one, 16) != 16) {
                _exit(1);
            }
        }
        _exit(0);
    }
    close(fds[1]);
    for (size_t i = 0; i < UU_N / 2; i++) {
        ev_uuid7(u[total++]);
    }
    for (;;) {
        ssize_t r = read(fds[0], u[total], 16);

        if (r == 0) {
            break;
        }
        ck_assert_int_eq(r, 16);
        total++;
    }
    close(fds[0]);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(total, (UU_THREADS + 1) * UU_N);
    qsort(u, total, 16, cmp_uuid);
    for (size_t i = 1; i < total; i++) {
        ck_assert_int_ne(memcmp(u[i - 1], u[i], 16), 0);
    }
    free(u);
}
END_TEST

/* ---- idempotency keys ---- */

#define KEYED_CRASH                                                                                \
    "{\"event_name\":\"crash_report\",\"user_id\":1,\"timestamp\":2,"                              \
    "\"message\":\"m\",\"idempotency_key\":\"k-1\"}"

static void
hex32(const uint8_t d[EV_DIGEST_LEN], char out[2 * EV_DIGEST_LEN + 1])
{
    for (int i = 0; i < EV_DIGEST_LEN; i++) {
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
}

START_TEST(test_key_field)
{
    struct ev_batch b = {0};
    struct ev_batch b2 = {0};
    const struct ev_item *it;
    char hex[2 * EV_DIGEST_LEN + 1];
    static const char *const bodies[] = {
        "{\"idempotency_key\":\"p1\",\"id\":\"x\"}",
        "{\"idempotency_key\":\"a1\",\"ip_address\":\"1.2.3.4\",\"user_agent\":\"u\","
        "\"referring_url\":\"http://h/\",\"advertiser_id\":\"a\"}",
        "{\"idempotency_key\":\"u1\",\"user_id\":\"u\",\"timestamp\":1}",
        "{\"idempotency_key\":\"d1\",\"time_stamp\":\"2024-01-01T00:00:00Z\",\"data\":[1]}",
    };
    static const char *const types[] = {"product", "ad_event", "user_login", "data_sample"};

    /* the field is allowed in every type, and gives the item its key and digest */
    it = parse_one(&b, NULL, KEYED_CRASH);
    ck_assert_ptr_null(it->error);
    ck_assert_str_eq(it->key, "k-1");
    ck_assert_uint_eq(it->key_len, 3);
    hex32(it->digest, hex);
    ck_assert_str_eq(hex, "0f842e7e4a518b45dddd2ae59d7a7bb8f13d00ed833e3ec58805e0116814fe27");
    ev_batch_free(&b);
    for (size_t i = 0; i < N_ELEMS(bodies); i++) {
        it = parse_one(&b, types[i], bodies[i]);
        ck_assert_msg(it->error == NULL, "%s: %s", bodies[i], it->error);
        ck_assert_ptr_nonnull(it->key);
        ev_batch_free(&b);
    }

    /* surrounding whitespace does not change the digest; inner layout does */
    ck_assert_int_eq(ev_parse_body(" \n" KEYED_CRASH "\r\n", strlen(KEYED_CRASH) + 4, NULL, &b2),
                     0);
    hex32(b2.items[0].digest, hex);
    ck_assert_str_eq(hex, "0f842e7e4a518b45dddd2ae59d7a7bb8f13d00ed833e3ec58805e0116814fe27");
    ev_batch_free(&b2);
    it = parse_one(&b2, "crash_report",
                   "{\"user_id\": 1,\"timestamp\":2,\"message\":\"m\","
                   "\"idempotency_key\":\"k-1\"}");
    hex32(it->digest, hex);
    ck_assert_str_ne(hex, "0f842e7e4a518b45dddd2ae59d7a7bb8f13d00ed833e3ec58805e0116814fe27");
    ev_batch_free(&b2);

    /* an event invalid for its type keeps its (valid) key for dead_letter */
    it = parse_one(&b, "crash_report", "{\"idempotency_key\":\"kk\",\"user_id\":\"x\"}");
    ck_assert_ptr_nonnull(it->error);
    ck_assert_str_eq(it->key, "kk");
    ev_batch_free(&b);

    /* unkeyed: no key */
    it = parse_one(&b, "product", "{\"id\":1}");
    ck_assert_ptr_null(it->key);
    ck_assert_uint_eq(it->key_len, 0);
    ev_batch_free(&b);
}
END_TEST

START_TEST(test_key_bad)
{
    static const struct {
        const char *json;
        const char *error;
    } cases[] = {
        {"{\"idempotency_key\":\"\",\"id\":1}", "idempotency_key: must not be empty"},
        {"{\"idempotency_key\":12,\"id\":1}", "idempotency_key: expected string, got integer"},
        {"{\"idempotency_key\":null,\"id\":1}", "idempotency_key: expected string, got null"},
        {"{\"idempotency_key\":\"a\\u0001b\",\"id\":1}",
         "idempotency_key: control character at byte 1"},
        {"{\"idempotency_key\":\"ab\\u007f\",\"id\":1}",
         "idempotency_key: control character at byte 2"},
        {"{\"idempotency_key\":\"\\u0085\",\"id\":1}",
         "idempotency_key: control character at byte 0"},
        {"{\"idempotency_key\":\"a\\nb\",\"id\":1}",
         "idempotency_key: control character at byte 1"},
        {"{\"idempotency_key\":\"st:1:am1\",\"id\":1}",
         "idempotency_key: begins with \"st:\", which only the keys the server derives from "
         "Segment messageIds use"},
        {"{\"idempotency_key\":\"sk-sha256:00\",\"id\":1}",
         "idempotency_key: begins with \"sk-sha256:\", which only the keys the server derives "
         "from Segment messageIds use"},
    };
    struct ev_batch b = {0};
    const struct ev_item *it = parse_one(&b, "product", cases[_i].json);

    ck_assert_ptr_nonnull(it->error);
    ck_assert_str_eq(it->error, cases[_i].error);
    ck_assert_ptr_null(it->key);
    ev_batch_free(&b);
}
END_TEST

START_TEST(test_key_length)
{
    char json[400];
    char key[EV_KEY_MAX + 2];
    struct ev_batch b = {0};
    const struct ev_item *it;

    memset(key, 'k', sizeof(key));
    key[EV_KEY_MAX] = '\0';
    snprintf(json, sizeof(json), "{\"idempotency_key\":\"%s\",\"id\":1}", key);
    it = parse_one(&b, "product", json);
    ck_assert_ptr_null(it->error);
    ck_assert_uint_eq(it->key_len, EV_KEY_MAX);
    ev_batch_free(&b);
    key[EV_KEY_MAX] = 'k';
    key[EV_KEY_MAX + 1] = '\0';
    snprintf(json, sizeof(json), "{\"idempotency_key\":\"%s\",\"id\":1}", key);
    it = parse_one(&b, "product", json);
    ck_assert_str_eq(it->error, "idempotency_key: longer than 255 bytes (256)");
    ev_batch_free(&b);
}
END_TEST

START_TEST(test_key_set)
{
    static const char body[] = "{\"id\":1}";
    struct ev_batch b = {0};
    const struct ev_type *product = ev_lookup("product", 7);
    uint8_t d[EV_DIGEST_LEN];

    /* a key from outside: set, digested like a field key */
    ck_assert_int_eq(ev_parse_body(body, strlen(body), product, &b), 0);
    ck_assert_int_eq(ev_batch_set_key(&b, 0, "hk", 2, "Idempotency-Key"), 0);
    ck_assert_str_eq(b.items[0].key, "hk");
    ev_digest(body, strlen(body), d);
    ck_assert_int_eq(memcmp(b.items[0].digest, d, EV_DIGEST_LEN), 0);
    ck_assert_uint_eq(b.n_valid, 1);
    ev_batch_free(&b);

    /* invalid from outside: the item is rejected naming the origin */
    ck_assert_int_eq(ev_parse_body(body, strlen(body), product, &b), 0);
    ck_assert_int_eq(ev_batch_set_key(&b, 0, "a\tb", 3, "Idempotency-Key"), DP_ERR_INVALID);
    ck_assert_str_eq(b.items[0].error, "Idempotency-Key: control character at byte 1");
    ck_assert_uint_eq(b.n_valid, 0);
    ev_batch_free(&b);

    /* the same key as the field is fine; a different one is not */
    ck_assert_int_eq(ev_parse_body("{\"id\":1,\"idempotency_key\":\"f\"}", 30, product, &b), 0);
    ck_assert_int_eq(ev_batch_set_key(&b, 0, "f", 1, "Idempotency-Key"), 0);
    ck_assert_int_eq(ev_batch_set_key(&b, 0, "g", 1, "Idempotency-Key"), DP_ERR_INVALID);
    ck_assert_str_eq(b.items[0].error,
                     "Idempotency-Key: differs from the event's idempotency_key field");
    ev_batch_free(&b);
}
END_TEST

START_TEST(test_batch_add)
{
    static const char good[] = " {\"id\":2} ";
    static const char two[] = "{\"id\":2} {\"id\":3}";
    static const char bad[] = "{\"id\":";
    struct ev_batch b = {0};
    const struct ev_type *product = ev_lookup("product", 7);

    ck_assert_int_eq(ev_batch_add(&b, good, strlen(good), product, NULL), 0);
    ck_assert_int_eq(ev_batch_add(&b, good, strlen(good), NULL, "type: missing"), 0);
    ck_assert_int_eq(ev_batch_add(&b, two, strlen(two), product, NULL), 0);
    ck_assert_int_eq(ev_batch_add(&b, bad, strlen(bad), product, NULL), 0);
    ck_assert_int_eq(ev_batch_add(&b, "{}", 2, product, NULL), 0);
    ck_assert_uint_eq(b.n, 5);
    ck_assert_uint_eq(b.n_valid, 1);
    for (size_t i = 0; i < b.n; i++) {
        ck_assert_uint_eq(b.items[i].index, i);
    }
    ck_assert_ptr_null(b.items[0].error);
    ck_assert_uint_eq(b.items[0].raw_len, 8);
    ck_assert_ptr_eq(b.items[0].type, product);
    ck_assert_str_eq(b.items[1].error, "type: missing");
    ck_assert_str_eq(b.items[2].error, "line 1 column 10: invalid JSON: end of event expected");
    ck_assert_ptr_nonnull(strstr(b.items[3].error, "invalid JSON"));
    ck_assert_str_eq(b.items[4].error, "id: required field missing");
    ev_batch_free(&b);
}
END_TEST

static Suite *
events_suite(void)
{
    Suite *s = suite_create("events");
    TCase *tc;

    tc = tcase_create("samples");
    tcase_add_loop_test(tc, test_sample, 0, N_ELEMS(samples));
    tcase_add_loop_test(tc, test_sample_untyped, 0, N_ELEMS(samples));
    tcase_add_loop_test(tc, test_sample_encodes, 0, N_ELEMS(samples));
    tcase_add_loop_test(tc, test_untyped_dispatch, 0, 11);
    tcase_add_test(tc, test_max_events);
    tcase_add_loop_test(tc, test_bad_json, 0, 16);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_test(tc, test_key_field);
    tcase_add_loop_test(tc, test_key_bad, 0, 9);
    tcase_add_test(tc, test_key_length);
    tcase_add_test(tc, test_key_set);
    tcase_add_test(tc, test_batch_add);
    suite_add_tcase(s, tc);

    tc = tcase_create("body");
    tcase_add_test(tc, test_body_object);
    tcase_add_test(tc, test_body_array);
    tcase_add_test(tc, test_body_ndjson);
    tcase_add_test(tc, test_body_concatenated);
    tcase_add_test(tc, test_body_mixed);
    tcase_add_test(tc, test_body_empty);
    tcase_add_test(tc, test_body_bom);
    tcase_add_test(tc, test_body_trailing_garbage);
    tcase_add_test(tc, test_body_trailing_brace);
    tcase_add_test(tc, test_body_malformed_middle);
    tcase_add_test(tc, test_body_malformed_array);
    tcase_add_test(tc, test_body_unterminated);
    tcase_add_test(tc, test_body_multiline_error);
    tcase_add_test(tc, test_body_column_utf8);
    tcase_add_test(tc, test_body_typed_url);
    suite_add_tcase(s, tc);

    tc = tcase_create("big");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_body_big_data_sample);
    tcase_add_test(tc, test_welford_large_offset);
    suite_add_tcase(s, tc);

    tc = tcase_create("copy");
    tcase_add_loop_test(tc, test_encode_row, 0, N_ELEMS(rows));
    tcase_add_test(tc, test_encode_row_keyed);
    tcase_add_test(tc, test_encode_rejects);
    tcase_add_test(tc, test_copy_escaping);
    tcase_add_test(tc, test_copy_escaping_large);
    tcase_add_loop_test(tc, test_timestamps, 0, 9);
    tcase_add_test(tc, test_uuid);
    suite_add_tcase(s, tc);

    tc = tcase_create("fast_json");
    tcase_add_loop_test(tc, test_fast_json, 0, N_ELEMS(fast_cases));
    tcase_add_loop_test(tc, test_json_load, 0, N_ELEMS(load_cases));
    tcase_add_loop_test(tc, test_json_load_lazy, 0, N_ELEMS(lazy_cases));
    tcase_add_test(tc, test_json_load_deep);
    tcase_add_test(tc, test_json_cursor);
    tcase_add_test(tc, test_json_minify);
    tcase_add_test(tc, test_batch_add_value);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_add_test(tc, test_registry_walk);
    tcase_add_loop_test(tc, test_field_tables, 0, (int)ev_registry_len);
    suite_add_tcase(s, tc);

    tc = tcase_create("regressions");
    tcase_add_loop_test(tc, test_regressions, 0, N_ELEMS(regressions));
    tcase_add_test(tc, test_nul_byte);
    suite_add_tcase(s, tc);

    tc = tcase_create("uuid7");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_uuid7_format_monotonic);
    tcase_add_test(tc, test_uuid7_threads_and_fork);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(events_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
