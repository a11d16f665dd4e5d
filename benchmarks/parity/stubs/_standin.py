"""Shared helper of the stand-ins: attributes that are placeholders raising when called."""


def placeholder(module: str, name: str):
    if name.startswith("__"):
        raise AttributeError(name)

    def fn(*args, **kwargs):
        raise RuntimeError(f"{module}.{name} is a parity-harness stand-in; it must not be called")

    fn.__name__ = name
    return fn
