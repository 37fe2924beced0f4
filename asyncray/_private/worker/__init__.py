"""Worker processes: the warm template they fork from, and the task executor."""
