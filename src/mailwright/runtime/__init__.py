"""Process runtime: TLS material, listening sockets, the node that runs every listener, workers."""
