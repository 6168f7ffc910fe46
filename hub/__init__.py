"""政务数据共享与证照交换枢纽 — the hub's core: settings, database, command line."""
