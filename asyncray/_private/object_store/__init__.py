"""The node's shared-memory object store: segments and the store's bookkeeping."""
