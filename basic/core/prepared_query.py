"""A queryset whose SQL Django compiles once per database, not on every call.

Django builds and compiles a query's SQL each time it runs. For the token lookup every REST call and
authenticated socket makes (the token joined to its user, 19 columns) that was 0.18 ms of the 0.43 ms
the lookup took: 8% of the web process's CPU per job start (py-spy, issue 19). A prepared query is
built once with marker values in place of its string parameters and compiled once per database; each
call runs that SQL with its own values, and its rows become model instances as Django's own iterator
makes them, `select_related` objects included. Parameters are strings or UUIDs (e.g. a primary
key: the worker's read of the job it runs, 12% of its CPU per trivial job, half of it compiling).
"""
import uuid
from collections.abc import Callable, Sequence

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


def _marker(n: int, kind: type) -> str | uuid.UUID:
    """A value no caller passes, to find parameter `n` among the compiled query's parameters."""
    if kind is str:
        return f"\x00prepared parameter {n}\x00"
    if kind is uuid.UUID:
        return uuid.UUID(int=(0x5EED_0F_9A_7A_3E7E_25 << 40) + n)
    raise TypeError(f"a prepared parameter is a str or a uuid.UUID, not {kind.__name__}")


def _as_compiled(marker: str | uuid.UUID, compiled: object) -> Callable[[object], object]:
    """How a value becomes what the database gets in its place, read from what the marker became:
    itself (a string; a UUID on PostgreSQL), or a UUID's 32 hex digits (Django's char(32) column
    elsewhere)."""
    if isinstance(marker, uuid.UUID):
        if compiled == marker:
            return lambda value: value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        if compiled == marker.hex:
            return lambda value: (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).hex
        raise ValueError(f"the UUID marker was compiled to {compiled!r}, a form this does not know")
    return lambda value: value


class _Compiled:
    def __init__(self, queryset: QuerySet, markers: tuple[str | uuid.UUID, ...]) -> None:
        compiler = queryset.query.get_compiler(using=queryset.db)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = []
        for marker in markers:
            found = [n for n, param in enumerate(self.params)
                     if param == marker or (isinstance(marker, uuid.UUID) and param == marker.hex)]
            if not found:
                raise ValueError(f"prepared parameter {marker!r} is not a parameter of the query")
            self.slots.append((found[0], _as_compiled(marker, self.params[found[0]])))
        select, klass_info = compiler.select, compiler.klass_info
        if compiler.annotation_col_map or queryset._known_related_objects:
            raise ValueError("a prepared query takes no annotations and no known related objects")
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, select, queryset.db)
        self.converters = list(compiler.get_converters([column[0] for column in select]).items())


class PreparedQuery:
    """`build(*markers)` -> a queryset of one model matching at most one row (a unique key);
    `get(*values)` runs it with `values` in the markers' places: the instance, or None.
    `parameters`: how many strings, or the type of each (str or uuid.UUID; a UUID parameter also
    takes its string form, and ValueError if it is not one)."""

    def __init__(self, build: Callable[..., QuerySet], parameters: int | Sequence[type]) -> None:
        self._build = build
        kinds = [str] * parameters if isinstance(parameters, int) else list(parameters)
        self._markers = tuple(_marker(n, kind) for n, kind in enumerate(kinds))
        self._model: type[Model] | None = None
        self._compiled: dict[str, _Compiled] = {}  # the database alias -> its compiled form

    def get(self, *values: str | uuid.UUID) -> Model | None:
        alias = router.db_for_read(self._model) if self._model is not None else None
        compiled = self._compiled.get(alias) if alias is not None else None
        if compiled is None:
            queryset = self._build(*self._markers)[:1]
            self._model, alias = queryset.model, queryset.db
            compiled = self._compiled[alias] = _Compiled(queryset, self._markers)
        params = list(compiled.params)
        for (slot, as_compiled), value in zip(compiled.slots, values, strict=True):
            params[slot] = as_compiled(value)
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            found = cursor.fetchone()
        if found is None:
            return None
        row = list(found)
        for position, (converters, expression) in compiled.converters:
            for converter in converters:
                row[position] = converter(row[position], expression, connection)
        instance = compiled.model.from_db(alias, compiled.init_list, row[compiled.start:compiled.end])
        for populator in compiled.populators:
            populator.populate(row, instance)
        return instance
