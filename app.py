"""WSGI entry point: ``gunicorn app:app`` serves the bundled default bot."""

import os

# One BLAS thread per worker: the server's own threads and workers already use the cores, and
# numpy's small int8-model matmuls get slower when BLAS threads compete with them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from alime.serving.app import create_app  # noqa: E402

app = create_app()
