"""Bearer API keys exactly as API.md §3.1 parses them."""

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.keys import authenticate_key

PREFIX = "Bearer "


class BearerAuthentication(BaseAuthentication):
    """`Authorization: Bearer <key>`; the prefix is optional and case-sensitive (upstream)."""

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None  # DRF answers 401 through authenticate_header()
        token = (header[len(PREFIX):] if header.startswith(PREFIX) else header).strip()
        if not token:
            raise AuthenticationFailed()
        user = authenticate_key(token)
        if user is None:
            raise AuthenticationFailed()
        return user, None

    def authenticate_header(self, request) -> str:
        return "Bearer"
