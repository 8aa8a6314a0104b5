"""kbsync keeps a Firestore knowledge base in step with the ElevenLabs knowledge base."""

__version__ = "0.1.0"
