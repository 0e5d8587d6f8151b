"""Plugin discovery: built-ins, installed packages, and plugins named on the command line.

Sources, in registration order:

1. built-ins (the modules in :data:`BUILTIN_PLUGINS`), through the same hooks as everyone else;
2. installed packages declaring an entry point in the group ``robench``;
3. modules or ``.py`` files listed in the ``ROBENCH_PLUGINS`` environment variable (comma
   separated);
4. modules or ``.py`` files given with ``--plugin``.

Every plugin class is recorded with its origin. Two classes with the same name and kind are an
error naming both origins; an unknown name is an error suggesting the closest registered one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pluggy

from robench import hookspecs
from robench.api import Dataset, Distortion, Executor, Method
from robench.errors import ConfigError, PluginError, unknown_choice

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "robench"
ENV_VAR = "ROBENCH_PLUGINS"
BUILTIN_PLUGINS = (
    "robench_plugins.datasets.digits",
    "robench_plugins.datasets.shapes",
    "robench_plugins.datasets.cifar",
    "robench_plugins.datasets.stl10",
    "robench_plugins.datasets.svhn",
    "robench_plugins.datasets.imagefolder",
    "robench_plugins.distortions.noise",
    "robench_plugins.distortions.blur",
    "robench_plugins.distortions.weather",
    "robench_plugins.distortions.digital",
    "robench_plugins.distortions.paper",
    "robench_plugins.methods.none",
    "robench_plugins.methods.finetune",
    "robench_plugins.methods.augmix",
    "robench_plugins.methods.ssl",
    "robench_plugins.methods.asym_kd",
    "robench.executors.local",
    "robench.executors.ray_executor",
    "robench.executors.slurm_executor",
)

# kind -> (hook name, base class)
KINDS: dict[str, tuple[str, type]] = {
    "dataset": ("robench_datasets", Dataset),
    "distortion": ("robench_distortions", Distortion),
    "method": ("robench_methods", Method),
    "executor": ("robench_executors", Executor),
}


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin class and where it came from.

    Attributes:
        kind: ``dataset``, ``distortion`` or ``method``.
        name: the registry name.
        cls: the plugin class.
        origin: ``built-in``, ``package NAME VERSION``, ``--plugin SPEC`` or ``ROBENCH_PLUGINS SPEC``.
        version: the providing package's version, when known.
    """

    kind: str
    name: str
    cls: type
    origin: str
    version: str | None

    @property
    def description(self) -> str:
        """One line describing the plugin (its docstring's first line)."""
        return self.cls.description()

    @property
    def module(self) -> str:
        """Module that defines the class."""
        return self.cls.__module__


class Registry:
    """The registered distortions, methods and datasets.

    Args:
        plugins: extra plugins (module names or paths to ``.py`` files / package directories),
            as given with ``--plugin``.
        entry_points: whether to load installed packages' entry points.
        environ: environment to read ``ROBENCH_PLUGINS`` from (default ``os.environ``).
    """

    def __init__(
        self,
        plugins: Sequence[str] = (),
        *,
        entry_points: bool = True,
        environ: dict[str, str] | None = None,
    ) -> None:
        from robench import __version__

        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._origins: dict[str, tuple[str, str | None]] = {}  # pluggy plugin name -> origin
        for module in BUILTIN_PLUGINS:
            self._register(_import(module, "built-in"), f"builtin:{module}", "built-in", __version__)
        if entry_points:
            self._load_entry_points()
        env = (os.environ if environ is None else environ).get(ENV_VAR, "")
        for spec in _split(env):
            self._register_spec(spec, ENV_VAR)
        for spec in plugins:
            self._register_spec(spec, "--plugin")
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from None
        self._entries = {kind: self._collect(kind) for kind in KINDS}

    # -- queries -----------------------------------------------------------------------------------

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """Sorted names of registered plugins of ``kind`` matching a glob ``pattern``."""
        return sorted(fnmatch.filter(self._entries[_kind(kind)], pattern))

    def entries(self, kind: str) -> list[PluginInfo]:
        """All registered plugins of ``kind``, sorted by name."""
        entries = self._entries[_kind(kind)]
        return [entries[name] for name in sorted(entries)]

    def info(self, kind: str, name: str, source: str = "") -> PluginInfo:
        """The plugin ``name`` of ``kind``; :class:`ConfigError` with a suggestion if unknown."""
        entries = self._entries[_kind(kind)]
        if name not in entries:
            raise unknown_choice(kind, name, source or f"{kind} name", entries)
        return entries[name]

    def get(self, kind: str, name: str, source: str = "") -> type:
        """The plugin class ``name`` of ``kind``."""
        return self.info(kind, name, source).cls

    def groups(self) -> dict[str, list[str]]:
        """Distortion group -> sorted distortion names."""
        groups: dict[str, list[str]] = {}
        for info in self.entries("distortion"):
            groups.setdefault(info.cls.group, []).append(info.name)
        return groups

    def resolve_distortions(self, specs: Iterable[str], source: str = "--distortions") -> list[str]:
        """Expand distortion names, group names and ``all`` into distortion names (order kept)."""
        groups = self.groups()
        names = self._entries["distortion"]
        out: list[str] = []
        for spec in specs:
            if spec in names:
                expanded = [spec]
            elif spec == "all":
                expanded = sorted(names)
            elif spec in groups:
                expanded = groups[spec]
            else:
                raise unknown_choice("distortion", spec, source, [*names, *groups, "all"])
            out.extend(n for n in expanded if n not in out)
        return out

    # -- registration ------------------------------------------------------------------------------

    def _register(self, module: ModuleType, name: str, origin: str, version: str | None) -> None:
        if self._pm.is_registered(module):
            logger.debug("plugin %s already registered; skipping %s", module.__name__, origin)
            return
        try:
            self._pm.register(module, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(f"cannot register plugin {module.__name__} ({origin}): {exc}") from None
        self._origins[name] = (origin, version)

    def _register_spec(self, spec: str, source: str) -> None:
        module = _load_spec(spec, source)
        self._register(module, f"{source}:{spec}", f"{source} {spec}", _module_version(module))

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            version = dist.version if dist else None
            origin = f"package {dist.name} {dist.version}" if dist else f"entry point {ep.name}"
            try:
                module = ep.load()
            except Exception as exc:  # third-party import code can raise anything; name the culprit
                raise PluginError(f"cannot load plugin {ep.value!r} ({origin}): {exc}") from None
            self._register(module, f"entrypoint:{ep.name}:{ep.value}", origin, version)

    def _collect(self, kind: str) -> dict[str, PluginInfo]:
        hook_name, base = KINDS[kind]
        entries: dict[str, PluginInfo] = {}
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            origin, version = self._origins[impl.plugin_name]
            for cls in _call_hook(impl, hook_name, origin):
                _check_class(cls, base, kind, origin)
                info = PluginInfo(kind, cls.name, cls, origin, version)
                if cls.name in entries:
                    first = entries[cls.name]
                    raise PluginError(
                        f"{kind} {cls.name!r} is registered twice: by {first.origin} "
                        f"({first.module}.{first.cls.__qualname__}) and by {origin} "
                        f"({info.module}.{cls.__qualname__}); uninstall or rename one"
                    )
                entries[cls.name] = info
        return entries


def _kind(kind: str) -> str:
    kind = kind.rstrip("s")
    if kind not in KINDS:
        raise unknown_choice("plugin kind", kind, "plugin kind", KINDS)
    return kind


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _import(module: str, origin: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # plugin import code can raise anything; name the culprit
        raise PluginError(f"cannot import plugin module {module!r} ({origin}): {exc}") from None


def _load_spec(spec: str, source: str) -> ModuleType:
    """Import a plugin given as a module name, a ``.py`` file or a package directory."""
    path = Path(spec).expanduser()
    if path.suffix == ".py" or os.sep in spec or path.exists():
        if not path.exists():
            raise ConfigError(f"plugin file {spec!r} (from {source}) does not exist")
        if path.is_dir() and (path / "__init__.py").is_file():
            return _import_file(path / "__init__.py", spec, source, package=True)
        if path.is_file() and path.suffix == ".py":
            return _import_file(path, spec, source)
        raise ConfigError(
            f"plugin {spec!r} (from {source}) is not a .py file or a package directory"
        )
    if importlib.util.find_spec(spec.split(".")[0]) is None:
        raise ConfigError(
            f"plugin {spec!r} (from {source}) is neither an existing path nor an importable module"
        )
    return _import(spec, f"{source} {spec}")


def _import_file(path: Path, spec: str, source: str, package: bool = False) -> ModuleType:
    path = path.resolve()
    stem = path.parent.name if package else path.stem
    name = f"robench_external_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    locations = [str(path.parent)] if package else None
    module_spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=locations)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # plugin import code can raise anything; name the culprit
        del sys.modules[name]
        raise PluginError(f"cannot import plugin {spec!r} (from {source}): {exc}") from None
    return module


def _module_version(module: ModuleType) -> str | None:
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def _call_hook(impl: pluggy.HookImpl, hook_name: str, origin: str) -> list[type]:
    try:
        result = impl.function()
    except Exception as exc:  # plugin code can raise anything; name the culprit
        raise PluginError(f"hook {hook_name} of {origin} raised: {exc}") from None
    if not isinstance(result, (list, tuple)):
        raise PluginError(
            f"hook {hook_name} of {origin} returned {type(result).__name__}; it must return a list of classes"
        )
    return list(result)


def _check_class(cls: object, base: type, kind: str, origin: str) -> None:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{origin} returned {cls!r} from its {kind} hook; expected a subclass of "
            f"robench.api.{base.__name__}"
        )
    cls.check_name()
