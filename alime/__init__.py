"""alime: a hybrid (retrieve, rerank, generate) customer-service chatbot engine.

Importing this package loads no TensorFlow, faiss or data, and starts no threads.
"""

__version__ = "0.1.0"
