"""How the stream worker ends, for whatever supervises it (``deploy.local.worker_process``, a container's
restart policy). Importable without Faust."""

# The worker stopped itself, committing nothing, so that its unfinished batch is delivered again: its guards
# (a stalled consumer, an offset gap), a batch that failed, a changelog value it cannot read. Start it again.
CRASH_EXIT_CODE = 70  # os.EX_SOFTWARE
