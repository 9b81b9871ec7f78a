#include "upload.h"

#include <errno.h>
#include <fcntl.h>
#include <magic.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"

#define PIECE (64 * 1024) /* a probe reads this much at a time; the first piece is what libmagic sees */

struct mk_sniffer {
  magic_t magic;
};

struct mk_upload {
  char *path;            /* streamed from disk, or NULL */
  char *data;            /* or sent from memory */
  size_t len;
  char *upload_path, *file_name, *mime;
  curl_off_t sent, total;
};

mk_sniffer *mk_sniffer_new(char *err, size_t errlen) {
  mk_sniffer *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  /* the type only; compressed files are not opened up (a .gz is application/gzip) */
  s->magic = magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS);
  if (!s->magic) {
    snprintf(err, errlen, "libmagic: %s", strerror(errno));
    free(s);
    return NULL;
  }
  if (magic_load(s->magic, NULL) != 0) {
    snprintf(err, errlen, "libmagic cannot load its database (%s): install libmagic-mgc",
             magic_error(s->magic) ? magic_error(s->magic) : "unknown error");
    magic_close(s->magic);
    free(s);
    return NULL;
  }
  return s;
}

void mk_sniffer_free(mk_sniffer *s) {
  if (!s) return;
  magic_close(s->magic);
  free(s);
}

static void sniff(mk_sniffer *s, const char *head, size_t len, mk_file_facts *out) {
  const char *type = magic_buffer(s->magic, head, len);
  snprintf(out->mime, sizeof out->mime, "%s", type ? type : "application/octet-stream");
}

static void hex(const unsigned char *md, unsigned n, char *out) {
  static const char digits[] = "0123456789abcdef";
  unsigned i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[md[i] >> 4];
    out[2 * i + 1] = digits[md[i] & 15];
  }
  out[2 * n] = '\0';
}

static void identity(const struct stat *st, mk_file_facts *out) {
  out->size = (long long)st->st_size;
  out->dev = (long long)st->st_dev;
  out->ino = (long long)st->st_ino;
  out->mtime = (double)st->st_mtim.tv_sec + (double)st->st_mtim.tv_nsec / 1e9;
}

int mk_file_identity(const char *path, mk_file_facts *out) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  identity(&st, out);
  return 0;
}

/* Fill `buf` from fd as far as the file goes: the bytes read, or -1. */
static ssize_t read_full(int fd, char *buf, size_t want) {
  size_t got = 0;
  while (got < want) {
    ssize_t n = read(fd, buf + got, want - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    got += (size_t)n;
  }
  return (ssize_t)got;
}

mk_probe_status mk_probe_file(mk_sniffer *s, const char *path, long long max_size, mk_file_facts *out,
                              char *err, size_t errlen) {
  struct stat st;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  char *buf = NULL;
  EVP_MD_CTX *ctx = NULL;
  int fd, first = 1;
  mk_probe_status status = MK_PROBE_OK;
  memset(out, 0, sizeof *out);
  err[0] = '\0';
  /* O_NONBLOCK: a FIFO must not hang the probe (it is refused below) */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    return errno == ENOENT || errno == ENOTDIR ? MK_PROBE_MISSING : MK_PROBE_UNREADABLE;
  }
  if (fstat(fd, &st) != 0) {
    snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    return MK_PROBE_UNREADABLE;
  }
  identity(&st, out);
  if (S_ISDIR(st.st_mode)) status = MK_PROBE_DIRECTORY;
  else if (!S_ISREG(st.st_mode)) status = MK_PROBE_NOT_REGULAR;
  else if (max_size > 0 && (long long)st.st_size > max_size) status = MK_PROBE_TOO_LARGE;
  if (status != MK_PROBE_OK) {
    close(fd);
    return status;
  }
  buf = malloc(PIECE);
  ctx = EVP_MD_CTX_new();
  if (!buf || !ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    status = MK_PROBE_NO_MEMORY;
    goto done;
  }
  out->size = 0;
  for (;;) {
    ssize_t n = read_full(fd, buf, PIECE);
    if (n < 0) {
      snprintf(err, errlen, "%s", strerror(errno));
      status = MK_PROBE_IO;
      goto done;
    }
    if (first) sniff(s, buf, (size_t)n, out);
    first = 0;
    if (n == 0) break;
    if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) {
      status = MK_PROBE_NO_MEMORY;
      goto done;
    }
    out->size += n;
    if (n < PIECE) break;
  }
  if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
    status = MK_PROBE_NO_MEMORY;
    goto done;
  }
  hex(md, mdlen, out->sha256);
done:
  if (status == MK_PROBE_NO_MEMORY) snprintf(err, errlen, "out of memory");
  EVP_MD_CTX_free(ctx);
  free(buf);
  close(fd);
  return status;
}

mk_probe_status mk_probe_data(mk_sniffer *s, const char *data, size_t len, mk_file_facts *out,
                              char *err, size_t errlen) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  memset(out, 0, sizeof *out);
  err[0] = '\0';
  if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
    snprintf(err, errlen, "out of memory");
    return MK_PROBE_NO_MEMORY;
  }
  hex(md, mdlen, out->sha256);
  out->size = (long long)len;
  sniff(s, data, len < PIECE ? len : PIECE, out);
  return MK_PROBE_OK;
}

mk_upload *mk_upload_new(const char *path, const char *data, size_t len, const char *upload_path,
                         const char *file_name, const char *mime) {
  mk_upload *u = calloc(1, sizeof *u);
  if (!u) return NULL;
  u->path = mk_copy_str(path);
  if (!path && data) {
    u->data = malloc(len ? len : 1);
    if (u->data) memcpy(u->data, data, len);
    u->len = len;
  }
  u->upload_path = mk_copy_str(upload_path);
  u->file_name = mk_copy_str(file_name);
  u->mime = mk_copy_str(mime);
  if ((path && !u->path) || (!path && !u->data) || !u->upload_path || !u->file_name || !u->mime) {
    mk_upload_free(u);
    return NULL;
  }
  return u;
}

void mk_upload_free(mk_upload *u) {
  if (!u) return;
  free(u->path);
  free(u->data);
  free(u->upload_path);
  free(u->file_name);
  free(u->mime);
  free(u);
}

/* libcurl's progress callback: counted for the log, read between steps. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
  mk_upload *u = ud;
  (void)dltotal;
  (void)dlnow;
  u->sent = ulnow;
  if (ultotal > 0) u->total = ultotal;
  return 0;
}

static int text_part(curl_mime *form, const char *name, const char *value) {
  curl_mimepart *part = curl_mime_addpart(form);
  return part && curl_mime_name(part, name) == CURLE_OK &&
         curl_mime_data(part, value, CURL_ZERO_TERMINATED) == CURLE_OK ? 0 : -1;
}

/* An in-memory file goes out straight from the upload's own copy
 * (curl_mime_data would copy it again, for every attempt): a reader over it,
 * one for each form, freed by libcurl with the form. */
typedef struct memory_reader {
  const char *data;
  size_t len, at;
} memory_reader;

static size_t read_memory(char *buf, size_t size, size_t nitems, void *arg) {
  memory_reader *r = arg;
  size_t n = size * nitems, left = r->len - r->at;
  if (n > left) n = left;
  memcpy(buf, r->data + r->at, n);
  r->at += n;
  return n;
}

/* libcurl rewinds a body it must send again (a reused connection found
 * dead before the request went out). */
static int seek_memory(void *arg, curl_off_t offset, int origin) {
  memory_reader *r = arg;
  curl_off_t base = origin == SEEK_SET ? 0 : origin == SEEK_CUR ? (curl_off_t)r->at : (curl_off_t)r->len;
  if (offset < -base || offset > (curl_off_t)r->len - base) return CURL_SEEKFUNC_FAIL; /* (no overflow) */
  r->at = (size_t)(base + offset);
  return CURL_SEEKFUNC_OK;
}

static CURLcode memory_part(curl_mimepart *part, const mk_upload *u) {
  memory_reader *r = malloc(sizeof *r);
  CURLcode rc;
  if (!r) return CURLE_OUT_OF_MEMORY;
  r->data = u->data;
  r->len = u->len;
  r->at = 0;
  rc = curl_mime_data_cb(part, (curl_off_t)u->len, read_memory, seek_memory, free, r);
  if (rc != CURLE_OK) free(r); /* not taken */
  return rc;
}

int mk_upload_setup(CURL *easy, mk_upload *u, curl_mime **mime) {
  curl_mime *form = curl_mime_init(easy);
  curl_mimepart *part;
  CURLcode rc;
  *mime = NULL;
  if (!form) return -1;
  /* the names first, so a server that streams the body knows where the file goes before it arrives */
  if (text_part(form, "uploadPath", u->upload_path) != 0 || text_part(form, "fileName", u->file_name) != 0 ||
      !(part = curl_mime_addpart(form)) || curl_mime_name(part, "file") != CURLE_OK) {
    curl_mime_free(form);
    return -1;
  }
  /* from disk as the request goes out: libcurl reads the file piece by piece */
  rc = u->path ? curl_mime_filedata(part, u->path) : memory_part(part, u);
  if (rc == CURLE_OK) rc = curl_mime_filename(part, u->file_name);
  if (rc == CURLE_OK) rc = curl_mime_type(part, u->mime);
  u->sent = u->total = 0;
  if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
  if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_XFERINFODATA, u);
  if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
  /* last: once set, the easy handle refers to the form */
  if (rc == CURLE_OK) rc = curl_easy_setopt(easy, CURLOPT_MIMEPOST, form);
  if (rc != CURLE_OK) {
    curl_mime_free(form);
    return -1;
  }
  *mime = form;
  return 0;
}

void mk_upload_progress(const mk_upload *u, long long *sent, long long *total) {
  *sent = (long long)u->sent;
  *total = (long long)u->total;
}
