/* heap.h: a binary min-heap of timers, keyed by due time.
 * Timers are embedded in their owners; the heap stores pointers and keeps each
 * timer's position so that a timer can be moved or removed in O(log n). */
#ifndef MODKIE_HEAP_H
#define MODKIE_HEAP_H

#include <stddef.h>

typedef struct mk_timer {
  double due;   /* monotonic seconds */
  size_t pos;   /* index + 1 while in the heap, 0 when not */
  void *owner;
  int kind;
} mk_timer;

typedef struct mk_heap {
  mk_timer **items;
  size_t len, cap;
} mk_heap;

/* Put t in the heap due at `due`, or move it there if already in. 0 on success, -1 out of memory. */
int mk_heap_set(mk_heap *h, mk_timer *t, double due);
/* Make room for n timers in all, so that mk_heap_set cannot fail until then. 0, or -1 out of memory. */
int mk_heap_reserve(mk_heap *h, size_t n);
void mk_heap_remove(mk_heap *h, mk_timer *t);
/* Restore the order after the keys (`due`) of timers in the heap were changed in place. */
void mk_heap_rebuild(mk_heap *h);
mk_timer *mk_heap_top(const mk_heap *h);
void mk_heap_free(mk_heap *h);

#endif
