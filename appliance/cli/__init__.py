"""The ``appliance`` command line (``appliance.cli.app.app:main``)."""
