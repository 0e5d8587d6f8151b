"""robench's built-in plugins (import name ``robench_plugins``).

They register through the same hooks as third-party plugins; the registry lists their modules in
``robench.registry.BUILTIN_PLUGINS``.
"""
