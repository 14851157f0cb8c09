"""Alias of `basic.jobs.registry` for one release (kind modules written before the move); import that instead."""
import sys
import warnings

from basic.jobs import registry as _registry

warnings.warn("basic.lifecycle.registry is now basic.jobs.registry", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _registry
