"""poolbench: which downsampling operator should this CNN use?

The Python API (poolbench/api.py): `run`, `load_run`, `compare`. They load on first use, so
`import poolbench` stays cheap and changes nothing (matplotlib backend, logging, threads).
"""

__version__ = "0.1.0"
__all__ = ["run", "load_run", "compare", "LoadedRun", "__version__"]


def __getattr__(name: str):
    if name in ("run", "load_run", "compare", "LoadedRun"):
        from poolbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'poolbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
