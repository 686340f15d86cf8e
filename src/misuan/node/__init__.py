"""The party daemon: control API, session workers, encrypted store, audit chain."""
