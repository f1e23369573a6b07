"""Named emulation topologies as pure data, one module each, plus the registry that names them."""
