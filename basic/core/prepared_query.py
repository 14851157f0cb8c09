"""A queryset whose SQL Django compiles once per database, not on every call.

Django builds and compiles a query's SQL each time it runs. For the token lookup every REST call and
authenticated socket makes (the token joined to its user, 19 columns) that was 0.18 ms of the 0.43 ms
the lookup took: 8% of the web process's CPU per job start (py-spy, issue 19). A prepared query is
built once with marker values in place of its string parameters and compiled once per database; each
call runs that SQL with its own values, and its rows become model instances as Django's own iterator
makes them, `select_related` objects included. Only string parameters can be prepared.
"""
from collections.abc import Callable

from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


class _Compiled:
    def __init__(self, queryset: QuerySet, markers: tuple[str, ...]) -> None:
        compiler = queryset.query.get_compiler(using=queryset.db)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        self.slots = [self.params.index(marker) for marker in markers]  # ValueError if one was not a parameter
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
    `get(*values)` runs it with `values` (strings) in the markers' places: the instance, or None."""

    def __init__(self, build: Callable[..., QuerySet], parameters: int) -> None:
        self._build = build
        self._markers = tuple(f"\x00prepared parameter {n}\x00" for n in range(parameters))
        self._model: type[Model] | None = None
        self._compiled: dict[str, _Compiled] = {}  # the database alias -> its compiled form

    def get(self, *values: str) -> Model | None:
        alias = router.db_for_read(self._model) if self._model is not None else None
        compiled = self._compiled.get(alias) if alias is not None else None
        if compiled is None:
            queryset = self._build(*self._markers)[:1]
            self._model, alias = queryset.model, queryset.db
            compiled = self._compiled[alias] = _Compiled(queryset, self._markers)
        params = list(compiled.params)
        for slot, value in zip(compiled.slots, values, strict=True):
            params[slot] = value
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
