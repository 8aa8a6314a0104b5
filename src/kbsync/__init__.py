"""kbsync keeps a Firestore knowledge base in step with the ElevenLabs knowledge base."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kbsync")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
