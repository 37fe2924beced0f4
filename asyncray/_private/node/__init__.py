"""The node manager process: resources, worker leases, the worker pool and the object store."""
