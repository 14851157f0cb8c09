"""Schedules in the Django admin (imported by basic/admin.py). Saving goes through
basic/jobs/schedules.py, so the schedule's periodic task (what beat reads) changes with it."""
import json
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from basic.jobs import schedules
from basic.models import Schedule


def _messages(errors: Any) -> str:
    return errors if isinstance(errors, str) else json.dumps(errors)


class ScheduleForm(forms.ModelForm):
    crontab = forms.CharField(required=False, max_length=200,
                              help_text='minute hour day-of-month month day-of-week, e.g. "*/5 * * * *"; '
                                        "or leave empty and give every.")
    every = forms.IntegerField(required=False, help_text="Seconds between runs (at least 10).")

    class Meta:
        model = Schedule
        fields = ["owner", "kind", "params", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["crontab"], self.initial["every"] = schedules.timing(self.instance)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        problems: dict[str, Any] = {}
        try:
            kind = schedules.check_kind(data.get("kind") or "")
            data["params"] = schedules.check_params(kind, data.get("params") or {})
        except schedules.ScheduleInvalid as exc:
            problems.update(exc.errors)
        try:
            schedules.check_timing(data.get("every"), data.get("crontab") or None)
        except schedules.ScheduleInvalid as exc:
            problems.update(exc.errors)
        for field, errors in problems.items():
            if field in self.fields and field not in self.errors:
                self.add_error(field, [_messages(error) for error in errors] if isinstance(errors, list)
                               else _messages(errors))
        return data


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ["id", "owner", "kind", "when", "enabled", "next_run", "last_job", "created"]
    list_filter = ["enabled", "kind"]
    list_select_related = ["owner", "last_job", "periodic_task__interval", "periodic_task__crontab"]
    search_fields = ["owner__username", "kind"]
    readonly_fields = ["last_job", "created"]

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> list[str]:
        return [*self.readonly_fields, "owner"] if obj else list(self.readonly_fields)

    @admin.display(description="When")
    def when(self, schedule: Schedule) -> str:
        crontab, every = schedules.timing(schedule)
        return f"cron {crontab}" if crontab else f"every {every} s" if every else "-"

    @admin.display(description="Next run")
    def next_run(self, schedule: Schedule) -> Any:
        return schedules.next_run(schedule) or "-"

    def save_model(self, request: HttpRequest, obj: Schedule, form: ScheduleForm, change: bool) -> None:
        data = form.cleaned_data
        kind = schedules.check_kind(data["kind"])
        if change:
            schedules.schedule_update(schedule=obj, kind=kind, params=data["params"], enabled=data["enabled"],
                                      every=data.get("every"), crontab=data.get("crontab") or None)
            return
        created = schedules.schedule_create(owner=data["owner"], kind=kind, params=data["params"],
                                            every=data.get("every"), crontab=data.get("crontab") or None,
                                            enabled=data["enabled"])
        obj.pk, obj.periodic_task, obj.created = created.pk, created.periodic_task, created.created

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        schedules.schedule_delete(schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for schedule in queryset:
            schedules.schedule_delete(schedule=schedule)
