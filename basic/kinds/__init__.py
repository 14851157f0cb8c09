"""The built-in job kinds, one module each; JOB_KIND_MODULES names the modules to load."""
