"""The demo data: students, their bulk creation and the students-by-age CSV report."""
