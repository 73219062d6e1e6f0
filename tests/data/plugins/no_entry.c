/* A shared object without the flash_plugin_entry symbol: refused. */
int not_a_flash_plugin(void);
int not_a_flash_plugin(void)
{
    return 42;
}
