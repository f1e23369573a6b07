"""Preloading schedulers: one class per module, registered by name (see ``base``)."""
