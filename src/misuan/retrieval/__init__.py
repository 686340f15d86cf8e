"""Encrypted retrieval (密态检索): secret-shared knowledge bases, secure top-k, oblivious fetch."""
