"""A queryset whose SQL Django compiles once per database, not on every call.

Django builds and compiles a query's SQL each time it runs. For the token lookup every REST call and
authenticated socket makes (the token joined to its user, 19 columns) that was 0.18 ms of the 0.43 ms
the lookup took: 8% of the web process's CPU per job start (py-spy, issue 19). A prepared query is
built once with marker values in place of its string parameters and compiled once per database; each
call runs that SQL with its own values, and its rows become model instances as Django's own iterator
makes them, `select_related` objects included. Parameters are strings or UUIDs (e.g. a primary
key: the worker's read of the job it runs, 12% of its CPU per trivial job, half of it compiling).

A prepared update does the same for `queryset.update(...)`: the worker's start and end of every job
were two such updates, 15% of its CPU per trivial job, most of it building and compiling them. A
prepared insert, for `instance.save()` of a new row: every job start's insert was 12% of the web
process's CPU per trivial job, half of it building the SQL.
"""
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections, router, transaction
from django.db.models import NOT_PROVIDED, Expression, Model, QuerySet
from django.db.models.query import get_related_populators
from django.db.models.sql import UpdateQuery


def _marker(n: int, kind: type) -> str | uuid.UUID | int:
    """A value no caller passes, to find parameter `n` among the compiled query's parameters."""
    if kind is int:
        return (0x5EED_0F9A_7A3E << 12) + n  # still a 64-bit integer, as the databases take
    if kind is str:
        return f"\x00prepared parameter {n}\x00"
    if kind is uuid.UUID:
        return uuid.UUID(int=(0x5EED_0F_9A_7A_3E7E_25 << 40) + n)
    raise TypeError(f"a prepared parameter is a str or a uuid.UUID, not {kind.__name__}")


def _as_compiled(marker: str | uuid.UUID | int, compiled: object) -> Callable[[object], object]:
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


def _find_markers(params: list, markers: Sequence[str | uuid.UUID | int]) -> list[tuple[int, Callable]]:
    """Where each marker went among a compiled query's parameters, and how a value goes there."""
    slots = []
    for marker in markers:
        found = [n for n, param in enumerate(params)
                 if param == marker or (isinstance(marker, uuid.UUID) and param == marker.hex)]
        if not found:
            raise ValueError(f"prepared parameter {marker!r} is not a parameter of the query")
        slots.append((found[0], _as_compiled(marker, params[found[0]])))
    return slots


class _Compiled:
    def __init__(self, queryset: QuerySet, markers: tuple[str | uuid.UUID, ...]) -> None:
        compiler = queryset.query.get_compiler(using=queryset.db)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = _find_markers(self.params, markers)
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


class _CompiledUpdate:
    """One shape of an update: its SQL, and where each value goes among its parameters. Django
    gives each column set to a plain value one parameter, in the order the columns are given
    (SQLUpdateCompiler.as_sql), before any other; the filter's and the computed columns' markers
    are found by value, and the filter's own constants stay as compiled."""

    def __init__(self, queryset: QuerySet, markers: tuple, columns: dict[str, Any],
                 computed: dict[str, tuple[int, Expression]]) -> None:
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values({**columns, **{name: expression for name, (_, expression) in computed.items()}})
        compiler = query.get_compiler(using=queryset.db)
        self.sql, params = compiler.as_sql()
        if not self.sql or query.related_updates:
            raise ValueError("a prepared update sets columns of its own table only")
        self.params = list(params)
        self.where_slots = _find_markers(self.params, markers)
        self.computed_slots = [(slot, name) for (slot, _), name in zip(
            _find_markers(self.params, [marker for marker, _ in computed.values()]), computed, strict=True)]
        self.column_slots = []  # (slot, the column's name as given): the first parameters, in order
        for name, (field, _model, value) in zip(columns, query.values[:len(columns)], strict=True):
            if hasattr(field, "get_placeholder"):
                raise ValueError(f"{name}: a column with a placeholder of its own is not prepared")
            if field.get_db_prep_save(value, connection=compiler.connection) is not None:
                self.column_slots.append((len(self.column_slots), name))
        taken = {slot for slot, _ in self.where_slots} | {slot for slot, _ in self.computed_slots}
        if taken & {slot for slot, _ in self.column_slots}:
            raise ValueError("the compiled update's parameters are not in the order this expects")


class PreparedUpdate:
    """`build(*markers)` -> a queryset; `run(*values, **columns)` is `queryset.update(**columns)`
    with `values` in the markers' places, compiled once per database and per shape: which columns
    are set, and which of them to NULL (Django writes `= NULL` for those, not a parameter).
    `computed`: columns set to an expression of one integer given per call, e.g. `{"last_seq":
    lambda n: Greatest(F("last_seq"), Value(n))}`, then `run(..., last_seq=7)`.
    Returns the number of rows updated, as `update()` does."""

    def __init__(self, build: Callable[..., QuerySet], parameters: int | Sequence[type],
                 computed: dict[str, Callable[[int], Expression]] | None = None) -> None:
        self._build = build
        kinds = [str] * parameters if isinstance(parameters, int) else list(parameters)
        self._markers = tuple(_marker(n, kind) for n, kind in enumerate(kinds))
        self._computed = {name: (_marker(1000 + n, int), make)
                          for n, (name, make) in enumerate((computed or {}).items())}
        self._model: type[Model] | None = None
        self._compiled: dict[tuple, _CompiledUpdate] = {}

    def run(self, *values: str | uuid.UUID, **columns: Any) -> int:
        queryset = None
        if self._model is None:
            queryset = self._build(*self._markers)
            self._model = queryset.model
        alias = router.db_for_write(self._model)
        connection = connections[alias]
        meta = self._model._meta
        plain = {name: value for name, value in columns.items() if name not in self._computed}
        prepared = {name: meta.get_field(name).get_db_prep_save(value, connection=connection)
                    for name, value in plain.items()}
        shape = (alias, tuple(columns), tuple(name for name, value in prepared.items() if value is None))
        compiled = self._compiled.get(shape)
        if compiled is None:
            queryset = (self._build(*self._markers) if queryset is None else queryset).using(alias)
            computed = {name: (marker, make(marker)) for name, (marker, make) in self._computed.items()
                        if name in columns}
            compiled = self._compiled[shape] = _CompiledUpdate(queryset, self._markers, plain, computed)
        params = list(compiled.params)
        for (slot, as_compiled), value in zip(compiled.where_slots, values, strict=True):
            params[slot] = as_compiled(value)
        for slot, name in compiled.computed_slots:
            params[slot] = int(columns[name])
        for slot, name in compiled.column_slots:
            params[slot] = prepared[name]
        with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            return cursor.rowcount


class PreparedInsert:
    """`insert(instance)` saves a new instance of `model` as `instance.save(force_insert=True)`
    would, with its INSERT written once per database. For a model whose primary key has a default
    and whose every column is sent as a plain parameter (no value the database fills in, no
    parent model, no field with a placeholder of its own); checked when first used. Django's
    pre_save and post_save signals are not sent: say so where it is used."""

    def __init__(self, model: type[Model]) -> None:
        self._model = model
        self._compiled: dict[str, str] = {}  # the database alias -> its INSERT

    def insert(self, instance: Model) -> Model:
        alias = router.db_for_write(self._model, instance=instance)
        connection = connections[alias]
        fields = self._model._meta.local_concrete_fields
        sql = self._compiled.get(alias)
        if sql is None:
            sql = self._compiled[alias] = self._compile(connection)
        params = [field.get_db_prep_save(field.pre_save(instance, add=True), connection=connection)
                  for field in fields]
        with transaction.mark_for_rollback_on_error(using=alias), connection.cursor() as cursor:
            cursor.execute(sql, params)
        instance._state.adding, instance._state.db = False, alias
        return instance

    def _compile(self, connection: Any) -> str:
        """The INSERT Django's SQLInsertCompiler writes for one row of every column."""
        meta = self._model._meta
        fields = meta.local_concrete_fields
        if meta.parents or meta.db_returning_fields or meta.pk.default is NOT_PROVIDED:
            raise ValueError(f"{meta.label}: a prepared insert needs a primary key with a default and no parent")
        for field in fields:
            if hasattr(field, "get_placeholder") or field.db_default is not NOT_PROVIDED:
                raise ValueError(f"{meta.label}.{field.name}: not a plain parameter of an insert")
        quote = connection.ops.quote_name
        return (f"{connection.ops.insert_statement()} {quote(meta.db_table)} "
                f"({', '.join(quote(field.column) for field in fields)}) "
                f"VALUES ({', '.join(['%s'] * len(fields))})")
