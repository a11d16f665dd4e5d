"""fred_jax: frequency-domain dataset distillation (FreD) in JAX/Flax."""

__version__ = "0.1.0"
