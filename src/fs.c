/* fs.c: the file-system helpers the Lua layer needs and plain Lua lacks:
 * `core.mkdir`, `fsync`, `fsync_dir`, `lock`, `symlink`, `opened_as`,
 * `private`, `realpath`, `isatty`, `flush`, `list_dir` (a batch journal made
 * durable, locked and private, a download folder and what it holds, the
 * CLI's record of tasks, the review page's paths, the CLI's terminal and its
 * output). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lualib.h>

#include "core.h"

/* The answer of a call that returns true | nil, message: true when `why` is NULL. */
static int push_outcome(lua_State *L, const char *why) {
  if (!why) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

/* core.mkdir(path [, private]) -> true | nil, message  (an existing
 * directory is fine, and left as it is); `private`: one this call creates
 * gets mode 0700 whatever the umask */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int private_dir = lua_toboolean(L, 2);
  struct stat st;
  if (mkdir(path, private_dir ? 0700 : 0777) == 0) {
    if (private_dir && chmod(path, 0700) != 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", path, strerror(errno));
      return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(errno == EEXIST ? ENOTDIR : errno));
  return 2;
}

/* The FILE* of a Lua file handle (io.open's), or an error when closed. */
static FILE *check_file(lua_State *L, int i) {
#if LUA_VERSION_NUM >= 502
  luaL_Stream *p = (luaL_Stream *)luaL_checkudata(L, i, LUA_FILEHANDLE);
  if (!p->closef) luaL_argerror(L, i, "file is closed");
  return p->f;
#else
  FILE **p = (FILE **)luaL_checkudata(L, i, LUA_FILEHANDLE); /* LuaJIT's handle starts with the FILE* too */
  if (!*p) luaL_argerror(L, i, "file is closed");
  return *p;
#endif
}

/* core.fsync(file) -> true | nil, message: flush Lua's buffer, then the OS's to the disk */
static int l_fsync(lua_State *L) {
  FILE *f = check_file(L, 1);
  return push_outcome(L, fflush(f) != 0 || fsync(fileno(f)) != 0 ? strerror(errno) : NULL);
}

/* core.lock(file) -> true | nil, message: an exclusive lock on the open file,
 * without waiting; held until the file is closed or the process ends. */
static int l_lock(lua_State *L) {
  FILE *f = check_file(L, 1);
  if (flock(fileno(f), LOCK_EX | LOCK_NB) == 0) return push_outcome(L, NULL);
  return push_outcome(L, errno == EWOULDBLOCK ? "locked by another process" : strerror(errno));
}

/* core.fsync_dir(path) -> true | nil, message: make a new name in the folder durable */
static int l_fsync_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_DIRECTORY), rc;
  if (fd < 0) return push_outcome(L, strerror(errno));
  rc = fsync(fd);
  close(fd);
  return push_outcome(L, rc != 0 ? strerror(errno) : NULL);
}

/* core.symlink(path) -> true when path names a symbolic link (not followed) */
static int l_symlink(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0 && S_ISLNK(st.st_mode));
  return 1;
}

/* core.opened_as(file, path) -> true | nil, message: the open file is the
 * regular file that path names, without following a symbolic link (so a link
 * put in its place before it was opened is found out before anything is
 * written through it). */
static int l_opened_as(lua_State *L) {
  FILE *f = check_file(L, 1);
  const char *path = luaL_checkstring(L, 2);
  struct stat fs, ps;
  const char *why = NULL;
  if (fstat(fileno(f), &fs) != 0 || lstat(path, &ps) != 0) why = strerror(errno);
  else if (S_ISLNK(ps.st_mode)) why = "it is a symbolic link";
  else if (!S_ISREG(ps.st_mode)) why = "it is not a regular file";
  else if (fs.st_dev != ps.st_dev || fs.st_ino != ps.st_ino) why = "it was replaced while being opened";
  return push_outcome(L, why);
}


/* core.private(path) -> true | nil, message: make the regular file `path`
 * readable and writable by its owner only (0600, whatever the umask),
 * creating it empty when missing, never through a symbolic link. Called
 * before io.open appends to it, so it is never readable by others, not
 * even for a moment. */
static int l_private(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  const char *why = NULL;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) why = errno == ELOOP ? "it is a symbolic link" : strerror(errno);
  else if (fstat(fd, &st) != 0) why = strerror(errno);
  else if (!S_ISREG(st.st_mode)) why = "it is not a regular file";
  else if ((st.st_mode & 0777) != 0600 && fchmod(fd, 0600) != 0) why = strerror(errno);
  if (fd >= 0) close(fd);
  return push_outcome(L, why);
}

/* core.realpath(path) -> the absolute path with no symlink, "." or ".." |
   nil, message: where the review page's relative links start and end */
static int l_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (realpath(path, buf) == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushstring(L, buf);
  return 1;
}

/* core.flush(file) -> true | nil, message: flush Lua's buffer, and say
 * whether any write to the file failed since it was opened (the error
 * indicator stays set after a failed write, which io's write may not report:
 * a full disk, a closed pipe with SIGPIPE ignored) */
static int l_flush(lua_State *L) {
  FILE *f = check_file(L, 1);
  if (fflush(f) != 0) return push_outcome(L, strerror(errno));
  if (ferror(f)) {
    clearerr(f); /* said once: a host calling the CLI again in-process starts clean */
    return push_outcome(L, "a write failed");
  }
  return push_outcome(L, NULL);
}

/* core.isatty(file) -> boolean */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty(fileno(check_file(L, 1))));
  return 1;
}

/* A directory being listed, closed by the collector if a push raises (out
 * of memory) before list_dir closes it itself. */
#define DIR_MT "modkie.core.dir"

static int dir_gc(lua_State *L) {
  DIR **d = (DIR **)luaL_checkudata(L, 1, DIR_MT);
  if (*d) closedir(*d);
  *d = NULL;
  return 0;
}

/* core.list_dir(path) -> { name, ... } (every entry but "." and "..", in
   no order) | nil, message: what a batch's download folder already holds */
static int l_list_dir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR **d = (DIR **)lua_newuserdata(L, sizeof *d);
  struct dirent *ent;
  int n = 0;
  *d = NULL;
  if (luaL_newmetatable(L, DIR_MT)) {
    lua_pushcfunction(L, dir_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  if (!(*d = opendir(path))) {
    lua_pushnil(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_newtable(L);
  while ((ent = readdir(*d)) != NULL) {
    if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
    lua_pushstring(L, ent->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(*d);
  *d = NULL;
  return 1;
}

const luaL_Reg mk_fs_functions[] = {
  {"mkdir", l_mkdir}, {"fsync", l_fsync}, {"fsync_dir", l_fsync_dir}, {"lock", l_lock},
  {"symlink", l_symlink}, {"opened_as", l_opened_as}, {"private", l_private}, {"realpath", l_realpath},
  {"isatty", l_isatty}, {"flush", l_flush}, {"list_dir", l_list_dir},
  {NULL, NULL}
};
