/* Preloaded under the sanitizers and valgrind: keep Lua C modules mapped at
 * exit, so leak reports can name the functions of modules lua_close unloaded. */
int dlclose(void *handle);
int dlclose(void *handle) {
  (void)handle;
  return 0;
}
