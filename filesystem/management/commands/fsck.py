"""manage.py fsck [--repair] [--quick] [--grace SECONDS]"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from filesystem import fsck


class Command(BaseCommand):
    help = ("Compare this node's metadata with the bytes its backends hold and report missing "
            "wrong-sized or corrupt (sha256; not with --quick) files, orphan blobs and stale "
            "upload temp files; --repair replaces damaged copies from good ones on other nodes "
            "(CALLFS_REPLICAS > 1) and deletes orphans and temp files older than the grace "
            "period (metadata is never deleted).")

    def add_arguments(self, parser):
        parser.add_argument("--repair", action="store_true")
        parser.add_argument("--quick", action="store_true",
                            help="check sizes only, without reading every copy for its sha256")
        parser.add_argument("--grace", type=float, default=fsck.GRACE_SECONDS,
                            help="ignore blobs younger than this many seconds (default 900)")

    def handle(self, *args, repair, grace, quick, **options):
        report = fsck.check(repair=repair, grace=grace, checksums=not quick,
                            progress=self.stdout.write)
        for path in report.missing:
            self.stdout.write(f"missing bytes: {path}")
        for path in report.wrong_size:
            self.stdout.write(f"wrong size: {path}")
        for path in report.corrupt:
            self.stdout.write(f"corrupt (sha256 differs): {path}")
        for backend, key in report.orphans:
            self.stdout.write(f"orphan blob: {backend} {key}" + (" (deleted)" if repair else ""))
        for temp in report.stale_temp_files:
            self.stdout.write(f"stale temp file: {temp}" + (" (deleted)" if repair else ""))
        summary = (f"{report.checked_files} files checked, {len(report.missing)} missing, "
                   f"{len(report.wrong_size)} wrong size, {len(report.corrupt)} corrupt, "
                   f"{len(report.orphans)} orphan blobs, "
                   f"{len(report.stale_temp_files)} stale temp files")
        if (report.missing or report.wrong_size or report.corrupt) and not (
                repair and settings.CALLFS.replicas > 1):
            raise CommandError(summary)
        if report.clean or repair:
            self.stdout.write(self.style.SUCCESS(summary))
        else:
            self.stdout.write(self.style.WARNING(summary + " (run with --repair to clean up)"))
