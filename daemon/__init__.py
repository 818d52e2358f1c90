"""ctxd: chat screenshots in, conversations out, over a Unix socket."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ctxd")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"
