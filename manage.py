#!/usr/bin/env python
"""Django's command-line utility for CallFS."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callfs_site.settings")
    from callfs_site.config import exit_on_bad_config

    exit_on_bad_config()  # one clear line for a bad setting, never a traceback
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
