"""Cluster tooling: certificates, cluster files, local node processes."""
