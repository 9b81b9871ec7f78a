#include "heap.h"

#include <stdlib.h>

static void place(mk_heap *h, size_t i, mk_timer *t) {
  h->items[i] = t;
  t->pos = i + 1;
}

static void sift_up(mk_heap *h, size_t i) {
  mk_timer *t = h->items[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h->items[parent]->due <= t->due) break;
    place(h, i, h->items[parent]);
    i = parent;
  }
  place(h, i, t);
}

static void sift_down(mk_heap *h, size_t i) {
  mk_timer *t = h->items[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= h->len) break;
    if (child + 1 < h->len && h->items[child + 1]->due < h->items[child]->due) child++;
    if (t->due <= h->items[child]->due) break;
    place(h, i, h->items[child]);
    i = child;
  }
  place(h, i, t);
}

int mk_heap_reserve(mk_heap *h, size_t n) {
  size_t cap = h->cap ? h->cap : 64;
  mk_timer **items;
  if (n <= h->cap) return 0;
  while (cap < n) cap *= 2;
  items = realloc(h->items, cap * sizeof *items);
  if (!items) return -1;
  h->items = items;
  h->cap = cap;
  return 0;
}

int mk_heap_set(mk_heap *h, mk_timer *t, double due) {
  if (t->pos) {
    double old = t->due;
    t->due = due;
    if (due < old) sift_up(h, t->pos - 1);
    else sift_down(h, t->pos - 1);
    return 0;
  }
  if (h->len == h->cap && mk_heap_reserve(h, h->cap + 1) != 0) return -1;
  t->due = due;
  place(h, h->len++, t);
  sift_up(h, h->len - 1);
  return 0;
}

void mk_heap_remove(mk_heap *h, mk_timer *t) {
  size_t i;
  mk_timer *last;
  if (!t->pos) return;
  i = t->pos - 1;
  t->pos = 0;
  last = h->items[--h->len];
  if (i == h->len) return;
  place(h, i, last);
  if (i > 0 && h->items[(i - 1) / 2]->due > last->due) sift_up(h, i);
  else sift_down(h, i);
}

void mk_heap_rebuild(mk_heap *h) {
  size_t i = h->len / 2;
  while (i-- > 0) sift_down(h, i);
}

mk_timer *mk_heap_top(const mk_heap *h) {
  return h->len ? h->items[0] : NULL;
}

void mk_heap_free(mk_heap *h) {
  size_t i;
  for (i = 0; i < h->len; i++) h->items[i]->pos = 0;
  free(h->items);
  h->items = NULL;
  h->len = h->cap = 0;
}
