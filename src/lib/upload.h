/* upload.h: local files for the gateway's upload API, and what modkie learns
 * about one before sending it.
 *
 *  - A probe reads a file once, in fixed-size pieces (memory stays flat
 *    whatever its size): its size, the SHA-256 of its bytes (uploads are
 *    named after it, so the same bytes are uploaded once and a retry
 *    overwrites a file with itself), and the type its bytes say, from
 *    libmagic (the extension is never trusted).
 *  - An upload is what one `POST /api/file-stream-upload` sends: a
 *    multipart/form-data body with `uploadPath`, `fileName` and `file`, the
 *    file streamed from disk by libcurl's mime API as the request goes out
 *    (curl_mime_filedata: never read into memory), or bytes the caller gave.
 *
 * Pure C: no Lua here. The engine runs an upload as one of its ops
 * (MK_OP_UPLOAD, answered as a call: call.h); src/upload.c binds the probes,
 * src/engine.c the upload op. */
#ifndef MODKIE_UPLOAD_H
#define MODKIE_UPLOAD_H

#include <curl/curl.h>
#include <stddef.h>

/* What a probe found. */
typedef struct mk_file_facts {
  long long size;
  char sha256[65];     /* hex */
  char mime[128];      /* what the bytes say, e.g. "image/png"; "application/octet-stream" when unknown */
  long long dev, ino;  /* files: to see later whether the file was replaced */
  double mtime;        /* files: Unix seconds, to see later whether it changed */
} mk_file_facts;

/* Why a probe refused a file (the Lua layer words the message). */
typedef enum {
  MK_PROBE_OK = 0,
  MK_PROBE_MISSING,     /* no such file */
  MK_PROBE_UNREADABLE,  /* exists, cannot be opened for reading */
  MK_PROBE_DIRECTORY,
  MK_PROBE_NOT_REGULAR, /* a device, a FIFO, a socket */
  MK_PROBE_TOO_LARGE,   /* over the limit: not read (facts.size holds the size) */
  MK_PROBE_IO,          /* a read failed half way */
  MK_PROBE_NO_MEMORY
} mk_probe_status;

/* A libmagic handle: loading its database takes a few milliseconds, so one
 * is kept and reused for every probe. */
typedef struct mk_sniffer mk_sniffer;

/* NULL with err set when libmagic or its database cannot be loaded. */
mk_sniffer *mk_sniffer_new(char *err, size_t errlen);
void mk_sniffer_free(mk_sniffer *s);

/* Probe the file at `path`: a regular file of at most `max_size` bytes
 * (<= 0: no limit) is read once; `err` gets the system's words on failure. */
mk_probe_status mk_probe_file(mk_sniffer *s, const char *path, long long max_size, mk_file_facts *out,
                              char *err, size_t errlen);
/* The same for bytes in memory (modkie.file{ data = … }). */
mk_probe_status mk_probe_data(mk_sniffer *s, const char *data, size_t len, mk_file_facts *out,
                              char *err, size_t errlen);
/* The file's identity now (size, dev, ino, mtime), without reading it: 0,
 * or -1 when it cannot be seen. To tell whether it changed during an upload. */
int mk_file_identity(const char *path, mk_file_facts *out);

/* One upload's request. The strings are copied. */
typedef struct mk_upload mk_upload;

/* `path` (streamed from disk) or `data`/`len` (sent from memory: copied);
 * NULL when out of memory. */
mk_upload *mk_upload_new(const char *path, const char *data, size_t len, const char *upload_path,
                         const char *file_name, const char *mime);
void mk_upload_free(mk_upload *u);

/* Make `easy` send the upload as multipart/form-data (CURLOPT_MIMEPOST),
 * counting its progress. *mime gets the form, which the transfer owns (free
 * it with curl_mime_free once the easy handle is done with it). 0, or -1. */
int mk_upload_setup(CURL *easy, mk_upload *u, curl_mime **mime);

/* Bytes sent so far by the upload's current attempt, and its total (0 before it starts). */
void mk_upload_progress(const mk_upload *u, long long *sent, long long *total);

#endif
