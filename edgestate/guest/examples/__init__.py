"""Example guest modules (Zig sources and manifests); build with edgestate.guest.build_example."""
