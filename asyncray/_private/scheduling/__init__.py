"""Cluster-wide scheduling logic: node choice and placement group bundles. Pure, no I/O."""
