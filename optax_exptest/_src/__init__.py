"""Private implementation modules of optax_exptest; import from the package instead."""
