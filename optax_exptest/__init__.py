"""optax_exptest: learning-rate-free training for JAX and Optax."""
