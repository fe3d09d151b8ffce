"""Content negotiation that always answers JSON: the API has one representation, and a client's
`Accept: application/octet-stream` on a download must not turn an error into a 406."""

from rest_framework.negotiation import BaseContentNegotiation


class JSONOnlyNegotiation(BaseContentNegotiation):
    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type
