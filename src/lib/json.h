/* json.h: reading untrusted JSON with cJSON (Debian's libcjson), the way
 * every answer is read in the engine:
 *  - at most MK_JSON_MAX_DEPTH levels of arrays and objects (deeper is no JSON
 *    at all), no NUL byte, nothing after the value;
 *  - the non-JSON number words that some servers write for NaN and the
 *    infinities (Python's json writes NaN, Infinity, -Infinity; printf writes
 *    nan, inf) read as null, so that such a value counts as absent instead of
 *    making the whole answer unreadable;
 *  - a number is a finite number or a string that reads as one, as Lua's
 *    tonumber reads it (so "200" and " 80 " count, "nan" and 1e999 do not). */
#ifndef MODKIE_JSON_H
#define MODKIE_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define MK_JSON_MAX_DEPTH 64

/* The value `text` (len bytes; text[len] must be readable, as a NUL-terminated
 * body is) holds, or NULL when it is not JSON within the rules above (or
 * memory ran out). The caller frees it with cJSON_Delete. */
cJSON *mk_json_parse(const char *text, size_t len);

/* obj[key] when obj is an object and has the key, else NULL. */
const cJSON *mk_json_get(const cJSON *obj, const char *key);
/* obj[key] when it is a string, else NULL. */
const char *mk_json_string(const cJSON *obj, const char *key);
/* Missing, null and "" count as absent: 0; anything else 1. */
int mk_json_present(const cJSON *v);
/* A finite number, or a string that reads as one: 1 with *out set; else 0. */
int mk_json_number(const cJSON *v, double *out);
/* A string as Lua's tonumber reads it (leading and trailing blanks, decimal
 * or hexadecimal; "inf" and "nan" are not numbers): 1 with a finite *out. */
int mk_number_from_text(const char *s, double *out);
/* lua-cjson writes every "/" as "\/" (valid JSON, but URLs read badly): `s`
 * (n bytes) copied to `out` (room for n) with the backslash of each "\/"
 * dropped. Returns the bytes written; n when there was none. */
size_t mk_json_unescape_slashes(char *out, const char *s, size_t n);

#endif
