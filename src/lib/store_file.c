/* store_file.c: an account's windows in a small file shared by the
 * processes of one host ("file:/path").
 *
 * Each process maps the file and answers every question under an fcntl
 * write lock on it: an open-file-description lock where the kernel has one,
 * so two clients of one process exclude each other too. The kernel drops a
 * lock when its holder dies, so a crashed process cannot wedge the others.
 * Taking the lock never waits: while another process holds it the answer is
 * "none now, ask again in a millisecond"; held for more than BUSY_AWAY
 * seconds (a stopped process), the store counts as away.
 *
 * Layout (host byte order; the file is for this host only):
 *   head     magic "modkie1\n", u32 windows, u32 0, u64 bytes in use, u64 epoch, peers[MAX_PEERS]
 *   windows  { account[16], u32 lane, u32 cap, u32 head, u32 used } + double times[cap]
 * A window's times are a ring of its last `cap` grants in CLOCK_MONOTONIC
 * seconds, the clock every process of the host shares. A time ahead of now
 * (left from before a reboot) counts as long past. The epoch is drawn each
 * time the file is started (afresh): a client that sees it change knows the
 * grants it saw before are gone, as after an outage. The file is created with
 * mode 0600; a file that is not empty and not in this layout is never written. */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ratelimit.h"

#define MAGIC "modkie1\n"
#define MAX_PEERS 64
#define PEER_SECONDS 60.0 /* a client that asked this recently shares the account */
#define BUSY_AWAY 1.0
#define RETRY_BUSY 0.001

typedef struct file_peer {
  uint8_t account[MK_ACCOUNT_BYTES];
  uint64_t client;
  double seen;
} file_peer;

typedef struct file_head {
  char magic[8];
  uint32_t windows, zero;
  uint64_t used;
  uint64_t epoch;
  file_peer peers[MAX_PEERS];
} file_head;

typedef struct file_window {
  uint8_t account[MK_ACCOUNT_BYTES];
  uint32_t lane, cap, head, used;
} file_window; /* followed by double times[cap] */

typedef struct file_store {
  mk_store base;
  char *path;
  int fd;                    /* -1 until opened */
  int ofd;                   /* open-file-description locks work here */
  unsigned char *map;
  size_t mapped;
  size_t where[MK_LANES];    /* each lane's window in the file, 0: look it up */
  double busy_since;         /* when the lock was first found held in a row of tries; -1: free last time */
  double busy_last;          /* the last try that found it held */
  uint64_t epoch;            /* the file's epoch when last answered from, 0 before */
} file_store;

static void away(file_store *f, mk_store_answer *a, const char *what, int err) {
  a->away = 1;
  if (err) snprintf(a->why, sizeof a->why, "file:%.120s: %s: %s", f->path, what, strerror(err));
  else snprintf(a->why, sizeof a->why, "file:%.120s: %s", f->path, what);
}

static int set_lock(file_store *f, short type) {
  struct flock fl;
  memset(&fl, 0, sizeof fl);
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
#ifdef F_OFD_SETLK
  if (f->ofd) {
    if (fcntl(f->fd, F_OFD_SETLK, &fl) == 0) return 0;
    if (errno != EINVAL) return -1;
    f->ofd = 0; /* a kernel without them: per-process locks */
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
  }
#endif
  return fcntl(f->fd, F_SETLK, &fl);
}

static int map_file(file_store *f, size_t size) {
  void *p;
  if (f->map && f->mapped == size) return 0;
  if (f->map) munmap(f->map, f->mapped);
  f->map = NULL;
  f->mapped = 0;
  p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
  if (p == MAP_FAILED) return -1;
  f->map = p;
  f->mapped = size;
  return 0;
}

/* Make bytes `from` to `size` of the file real (growing it to `size` bytes
 * if shorter) and map it whole. The blocks are allocated here, not left as a
 * hole that ftruncate makes: writing into a hole of a mapped file on a full
 * file system raises SIGBUS, which ends the host process; posix_fallocate
 * says ENOSPC instead, and the store counts as away. */
static int grow(file_store *f, size_t from, size_t size) {
  int rc = posix_fallocate(f->fd, (off_t)from, (off_t)(size - from));
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return size > f->mapped ? map_file(f, size) : 0;
}

/* Start the file afresh (it was empty, or ours and damaged). */
static int start_afresh(file_store *f) {
  file_head *h;
  if (f->map) munmap(f->map, f->mapped); /* its pages are gone with the file's bytes */
  f->map = NULL;
  f->mapped = 0;
  if (ftruncate(f->fd, 0) != 0 || grow(f, 0, sizeof *h) != 0) return -1;
  h = (file_head *)f->map;
  memset(h, 0, sizeof *h);
  memcpy(h->magic, MAGIC, sizeof h->magic);
  h->used = sizeof *h;
  h->epoch = f->base.client ^ (uint64_t)(mk_clock() * 1e9);
  if (!h->epoch) h->epoch = 1;
  memset(f->where, 0, sizeof f->where);
  return 0;
}

/* The window of `lane` at `off` if it is one and is whole, else NULL. */
static file_window *window_at(file_store *f, size_t off, size_t used) {
  file_window *w;
  if (off < sizeof(file_head) || off + sizeof *w > used) return NULL;
  w = (file_window *)(f->map + off);
  if (w->cap == 0 || w->cap > (used - off - sizeof *w) / sizeof(double)) return NULL;
  return w;
}

static int ours(const file_store *f, const file_window *w, mk_lane lane) {
  return w->lane == (uint32_t)lane && memcmp(w->account, f->base.account, MK_ACCOUNT_BYTES) == 0;
}

/* This account's window for `lane`, made (for `limit` grants) when missing.
 * NULL with errno set on an I/O failure; *damaged when the file is ours but broken. */
static file_window *find_window(file_store *f, mk_lane lane, int limit, int *damaged) {
  file_head *h = (file_head *)f->map;
  size_t off = f->where[lane], end;
  uint32_t i;
  file_window *w = off ? window_at(f, off, h->used) : NULL;
  *damaged = 0;
  if (w && ours(f, w, lane)) return w;
  for (i = 0, off = sizeof *h; i < h->windows; i++) {
    if (!(w = window_at(f, off, h->used))) {
      *damaged = 1;
      return NULL;
    }
    if (ours(f, w, lane)) {
      f->where[lane] = off;
      return w;
    }
    off += sizeof *w + (size_t)w->cap * sizeof(double);
  }
  off = h->used;
  end = off + sizeof *w + (size_t)limit * sizeof(double);
  if (grow(f, off, end) != 0) return NULL;
  h = (file_head *)f->map;
  w = (file_window *)(f->map + off);
  memset(w, 0, end - off);
  memcpy(w->account, f->base.account, MK_ACCOUNT_BYTES);
  w->lane = (uint32_t)lane;
  w->cap = (uint32_t)limit;
  /* whole before it is counted: a crash in between leaves it unseen */
  h->used = end;
  h->windows++;
  f->where[lane] = off;
  return w;
}

/* Grant up to `want` in the window: at most `limit` in any `per` seconds. */
static void grant(file_window *w, int want, int limit, double per, double now, mk_store_answer *a) {
  double *times = (double *)(w + 1);
  uint32_t cap = w->cap, lim = (uint32_t)limit < cap ? (uint32_t)limit : cap, n = 0, k;
  if (w->head >= cap || w->used > cap) w->head = w->used = 0; /* not ours to trust */
  while (n < (uint32_t)want && n < lim) {
    uint32_t back = lim - n; /* after n more grants, this one would be the lim-th newest */
    if (w->used >= back) {
      double t = times[(w->head + cap - back) % cap];
      if (t > now - per && t <= now) {
        a->retry_in = t + per - now;
        break;
      }
    }
    n++;
  }
  for (k = 0; k < n; k++) {
    times[w->head] = now;
    w->head = (w->head + 1) % cap;
    if (w->used < cap) w->used++;
  }
  a->granted = (int)n;
}

/* Note this client as one of the account's, and count them. */
static int count_peers(file_store *f, double now) {
  file_head *h = (file_head *)f->map;
  file_peer *mine = NULL, *spare = NULL;
  int i, peers = 1;
  for (i = 0; i < MAX_PEERS; i++) {
    file_peer *p = &h->peers[i];
    int live = p->seen > now - PEER_SECONDS && p->seen <= now;
    int account = memcmp(p->account, f->base.account, MK_ACCOUNT_BYTES) == 0;
    if (account && p->client == f->base.client) mine = p;
    else if (live && account) peers++;
    else if (!live && !spare) spare = p;
  }
  if (!mine) mine = spare;
  if (mine) {
    memcpy(mine->account, f->base.account, MK_ACCOUNT_BYTES);
    mine->client = f->base.client;
    mine->seen = now;
  }
  return peers;
}

/* Under the lock: the file mapped and checked; NULL with the answer "away" set. */
static file_head *open_head(file_store *f, mk_store_answer *a) {
  struct stat st;
  file_head *h;
  if (fstat(f->fd, &st) != 0) {
    away(f, a, "fstat", errno);
    return NULL;
  }
  if (st.st_nlink == 0) { /* removed: the next question opens the path again */
    away(f, a, "removed while in use; opening it again", 0);
    return NULL;
  }
  if (st.st_size == 0) {
    if (start_afresh(f) != 0) {
      away(f, a, "cannot start the file", errno);
      return NULL;
    }
  } else if ((size_t)st.st_size < sizeof *h) {
    away(f, a, "not a modkie window file; left as it is", 0);
    return NULL;
  } else if (map_file(f, (size_t)st.st_size) != 0) {
    away(f, a, "mmap", errno);
    return NULL;
  }
  h = (file_head *)f->map;
  if (memcmp(h->magic, MAGIC, sizeof h->magic) != 0) {
    away(f, a, "not a modkie window file; left as it is", 0);
    return NULL;
  }
  if ((h->used < sizeof *h || h->used > f->mapped) && start_afresh(f) != 0) {
    away(f, a, "cannot start the file", errno);
    return NULL;
  }
  return (file_head *)f->map;
}

/* Under the lock: answer from the file. */
static void answer_locked(file_store *f, mk_lane lane, int want, int limit, double per, mk_store_answer *a) {
  file_window *w;
  int damaged;
  double now;
  if (!open_head(f, a)) return;
  w = find_window(f, lane, limit, &damaged);
  if (!w && damaged) { /* ours, broken by something else: start afresh */
    if (start_afresh(f) == 0) w = find_window(f, lane, limit, &damaged);
  }
  if (!w) {
    away(f, a, "cannot grow the file", errno);
    return;
  }
  now = mk_clock(); /* read under the lock: grants are stamped in the order they are given */
  grant(w, want, limit, per, now, a);
  a->peers = count_peers(f, now);
  if (f->epoch && f->epoch != ((file_head *)f->map)->epoch) {
    a->reset = 1;
    snprintf(a->why, sizeof a->why, "file:%.120s: started afresh (emptied or damaged): its windows were lost", f->path);
  }
  f->epoch = ((file_head *)f->map)->epoch;
}

static void file_ask(mk_store *s, mk_lane lane, int want, int limit, double per, double now) {
  file_store *f = (file_store *)s;
  mk_store_answer *a = &s->answer[lane];
  memset(a, 0, sizeof *a);
  a->ready = 1;
  if (f->fd < 0) {
    f->fd = open(f->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f->fd < 0) {
      away(f, a, "cannot open", errno);
      return;
    }
  }
  if (set_lock(f, F_WRLCK) != 0) {
    if (errno != EAGAIN && errno != EACCES) {
      away(f, a, "cannot lock", errno);
    } else {
      /* a try long after the last is a new wait, not the same one */
      if (f->busy_since < 0 || now - f->busy_last > BUSY_AWAY / 10) f->busy_since = now;
      f->busy_last = now;
      if (now - f->busy_since > BUSY_AWAY) away(f, a, "locked by another process for over a second", 0);
      else a->retry_in = RETRY_BUSY;
    }
    return;
  }
  f->busy_since = -1;
  answer_locked(f, lane, want, limit, per, a);
  set_lock(f, F_UNLCK);
  if (a->away) { /* open it afresh next time: it may have been removed or replaced */
    if (f->map) munmap(f->map, f->mapped);
    f->map = NULL;
    f->mapped = 0;
    memset(f->where, 0, sizeof f->where);
    close(f->fd);
    f->fd = -1;
  }
}

static void file_free(mk_store *s) {
  file_store *f = (file_store *)s;
  if (f->map) munmap(f->map, f->mapped);
  if (f->fd >= 0) close(f->fd); /* drops the lock too */
  free(f->path);
  free(f);
}

static const mk_store_ops file_ops = {"file", file_ask, NULL, NULL, NULL, file_free};

mk_store *mk_store_file_new(const char *path, char *err, size_t errlen) {
  file_store *f;
  if (!path || !path[0]) {
    snprintf(err, errlen, "file: needs a path (file:/path)");
    return NULL;
  }
  f = calloc(1, sizeof *f);
  if (!f || !(f->path = malloc(strlen(path) + 1))) {
    free(f);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(f->path, path, strlen(path) + 1);
  /* A path that can never be a file (a folder, a file where a folder should
   * be, no permission) is a mistake in the option: said at once, not a
   * client at 1/N of the limits for good. A folder that does not exist yet
   * may be made (or mounted) later: the store is away until then. */
  f->fd = open(f->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (f->fd < 0 && errno != ENOENT) {
    snprintf(err, errlen, "file:%.200s: cannot be opened: %s", path, strerror(errno));
    free(f->path);
    free(f);
    return NULL;
  }
  if (f->fd >= 0) close(f->fd); /* opened again when first asked, as after an outage */
  f->fd = -1;
  f->base.ops = &file_ops;
  f->ofd = 1;
  f->busy_since = -1;
  return &f->base;
}
