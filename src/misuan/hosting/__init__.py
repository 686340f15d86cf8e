"""Encrypted model hosting (密态托管): publish, list, show, remove, grant, revoke, verify."""

from .manage import grant_model, list_models, remove_model, revoke_model, show_model, verify_model
from .publish import PublishResult, publish_model

__all__ = [
    "publish_model",
    "PublishResult",
    "list_models",
    "show_model",
    "remove_model",
    "grant_model",
    "revoke_model",
    "verify_model",
]
