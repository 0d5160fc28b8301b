"""The knowledge base: QA pairs in SQLite, and their import/export formats."""

from alime.kb.store import KnowledgeBase, NotFound

__all__ = ["KnowledgeBase", "NotFound"]
