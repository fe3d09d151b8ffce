"""A link acts for its creator: deactivating the creator revokes their links (issue 20)."""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver

from links import services


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="links-revoke-on-deactivation")
def revoke_links_of_deactivated_user(sender, instance, created: bool, **kwargs) -> None:
    """Saving an inactive user (the admin's "active" box, a script) revokes their open links for
    good: reactivating the account brings none back. Downloads check the creator too, for
    deactivations that bypass save() (queryset.update)."""
    if not created and not instance.is_active:
        services.revoke_links_of(instance)
