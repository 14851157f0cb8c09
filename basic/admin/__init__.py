"""Admin: students (editable) and jobs (read-only, with a download link and a cancel action).

The job admin lists whatever fields the model has, so it keeps working as fields are added or
renamed; jobs are only ever changed through the lifecycle (here: `services.job_cancel`).
"""
from uuid import UUID

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from basic.jobs import services
from basic.models import Job, Student


@admin.register(Student)
class StudentAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "age", "owner", "created"]
    search_fields = ["name", "owner__username"]
    list_filter = ["age"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]  # a select of every user would not scale
    readonly_fields = ["created"]
    show_full_result_count = False  # no second COUNT(*) over a big table on every search


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "progress", "owner", "created", "finished", "download"]
    list_filter = ["kind", "status", ("owner", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["owner"]
    search_fields = ["id"]
    search_help_text = "A job's full id (UUID)."
    date_hierarchy = "created"
    actions = ["cancel_jobs"]

    def get_readonly_fields(self, request: HttpRequest, obj: Job | None = None) -> list[str]:
        return [field.name for field in Job._meta.fields] + ["download"]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(id=UUID(term)), False
        except ValueError:
            return queryset.none(), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False,
                         "show_save_and_add_another": False, "show_delete": False}
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="Download")
    def download(self, job: Job) -> str:
        if job.status != Job.Status.DONE:
            return "-"
        # Kinds whose result has no file leave the file name empty (the field may be renamed).
        names = [field.name for field in Job._meta.fields if field.name in ("output_name", "report_name")]
        if names and not getattr(job, names[0]):
            return "-"
        return format_html('<a href="{}">download</a>', reverse("job-download", kwargs={"pk": job.id}))

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Queued jobs end now; running ones stop at their next step; finished ones are left alone."""
        jobs = list(queryset)
        cancelled = sum(1 for job in jobs if services.job_cancel(job=job))
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} job(s) (a running job stops at its next step).",
                              messages.SUCCESS)
        if len(jobs) - cancelled:
            self.message_user(request, f"{len(jobs) - cancelled} job(s) had already finished.", messages.WARNING)


from basic.admin import schedules as schedule_admin  # noqa: E402, F401  (registers Schedule; basic/admin/schedules.py)
from basic.admin import tokens as token_admin  # noqa: E402, F401  (registers ApiToken; basic/admin/tokens.py)
