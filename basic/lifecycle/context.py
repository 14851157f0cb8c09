"""Alias of `basic.jobs.context` for one release (kind modules written before the move); import that instead."""
import sys
import warnings

from basic.jobs import context as _context

warnings.warn("basic.lifecycle.context is now basic.jobs.context", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _context
