"""The core client every driver and worker runs: ownership, submission, get/put/wait."""
