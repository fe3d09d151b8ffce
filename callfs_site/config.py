"""Every CallFS setting, read in one place: environment over defaults.

`load_config()` returns a frozen `Config`; a bad value raises `ImproperlyConfigured` whose message
names the setting in one line, so entry points can print it and exit without a traceback.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import environ
import yaml
from django.core.exceptions import ImproperlyConfigured

from callfs_site import fastpaths
from callfs_site.files import fsync_directory

BASE_DIR = Path(__file__).resolve().parent.parent

# Keys published with this project or by Django (the former CallFS development default,
# startproject's "django-insecure-" ones): anyone can sign with them, so they are refused unless
# DJANGO_DEBUG is on. Without DJANGO_SECRET_KEY each installation generates its own instead.
PUBLISHED_SECRET_KEYS = frozenset({"callfs-development-secret-key-do-not-use-in-production"})
PUBLISHED_SECRET_KEY_PREFIX = "django-insecure-"  # noqa: S105 - a prefix to refuse
SECRET_KEY_FILE = "var/secret_key"  # noqa: S105 - a path, relative to the project as var/data
MIN_SECRET_LENGTH = 16
RESERVED_USERNAMES = frozenset({"root", "internal-proxy"})
BACKENDS = ("localfs", "s3")


@dataclass(frozen=True)
class Config:
    """The validated settings of one CallFS node."""

    debug: bool
    secret_key: str
    allowed_hosts: list[str]
    database: dict
    redis_url: str | None
    data_dir: Path
    default_backend: str
    s3_bucket: str | None
    s3_endpoint_url: str | None
    s3_region: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    node_id: str
    node_url: str
    internal_secret: str | None
    link_secret: str
    external_url: str | None
    api_keys: dict[str, str] = field(default_factory=dict)  # key -> username
    log_format: str = "console"
    log_level: str = "INFO"
    max_upload_bytes: int = 10 * 1024**3
    lock_timeout: float = 30.0
    idle_timeout: float = 60.0
    umask: int = 0o022
    metrics_public: bool = False
    bind: str = "127.0.0.1:8000"
    metrics_bind: str | None = None  # host:port serving only /metrics (no key) and /health
    secret_key_file: Path | None = None  # where secret_key was read, when not from the env
    replicas: int = 1  # copies of each local-disk file, on distinct nodes
    replicas_strict: bool = False  # fewer live nodes than replicas: 503 instead of fewer copies
    repair_interval: float = 60.0  # seconds between a node's background repair rounds; 0: off
    s3_prefix: str = "callfs/"  # where in the bucket: deployments may share one bucket
    stock: bool = False  # CALLFS_STOCK: the plain code instead of the shortcuts (fastpaths)

    def production_warnings(self) -> list[str]:
        """Settings that work but are unsafe in production: one line each, naming the setting."""
        found = []
        if "*" in self.allowed_hosts and not self.debug:
            found.append("DJANGO_ALLOWED_HOSTS: '*' accepts any Host header; list the names "
                         "this server is reached by. Download links use CALLFS_EXTERNAL_URL, "
                         f"else CALLFS_NODE_URL ({self.external_url or self.node_url})")
        if self.secret_key_file is not None and self.internal_secret:
            found.append(f"DJANGO_SECRET_KEY: read from {self.secret_key_file}, made on this "
                         "machine; every node of a cluster needs the same DJANGO_SECRET_KEY")
        return found

    def masked(self) -> dict[str, object]:
        """The settings as printable values, secrets replaced by asterisks."""
        secret = {"secret_key", "s3_secret_key", "internal_secret", "link_secret"}
        shown: dict[str, object] = {}
        for name, value in self.__dict__.items():
            if name == "api_keys":
                value = sorted(set(value.values()))  # the users; never the keys
            elif name == "database":
                value = {k: ("*" * 8 if k == "PASSWORD" and v else v) for k, v in value.items()
                         if k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
            elif name in secret and value:
                value = "*" * 8
            elif name == "umask":
                value = f"{value:03o}"
            elif name == "redis_url" and value and "@" in value:
                scheme, rest = value.split("://", 1)
                value = f"{scheme}://********@{rest.rsplit('@', 1)[1]}"
            shown[name] = value
        return shown

    @property
    def metrics_port(self) -> int | None:
        """The port of CALLFS_METRICS_BIND: a request whose connection arrived on it came
        through the metrics listener (CALLFS_BIND's port is always another one)."""
        return int(self.metrics_bind.rsplit(":", 1)[1]) if self.metrics_bind else None


def _fail(setting: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{setting}: {problem}")


def _url(env: environ.Env, name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
    value = env.str(name, default=default)
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise _fail(name, f"{value!r} is not a {'/'.join(schemes)} URL")
    return value.rstrip("/")


def _int(env: environ.Env, name: str, default: int, minimum: int) -> int:
    raw = env.str(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise _fail(name, f"{raw!r} is not an integer") from None
    if value < minimum:
        raise _fail(name, f"must be at least {minimum}")
    return value


def _bool(env: environ.Env, name: str, default: bool) -> bool:
    raw = env.str(name, default="1" if default else "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise _fail(name, f"{raw!r} is not a boolean (use 1/0, true/false)")


def _secret(env: environ.Env, name: str, default: str | None = None) -> str | None:
    value = env.str(name, default=default)
    if value is None or value == "":
        return None
    if len(value) < MIN_SECRET_LENGTH:
        raise _fail(name, f"must be at least {MIN_SECRET_LENGTH} characters long")
    return value


def _host_port(address: str) -> tuple[str, int | None] | None:
    """(host, port) of a TCP address as gunicorn's bind takes it ("host:port", "[v6]:port",
    ":port", "host"); None for a unix socket or inherited descriptor, or a malformed one."""
    if address.startswith(("unix:", "fd://", "/")):
        return None
    found = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*)(?::(\d{1,5}))?", address)
    if not found:
        return None
    return found.group(1), int(found.group(2)) if found.group(2) else None


def _metrics_bind(env: environ.Env, bind: str) -> str | None:
    """CALLFS_METRICS_BIND, upstream's metrics.listen_addr: a TCP address of its own."""
    raw = env.str("CALLFS_METRICS_BIND", default="").strip()
    if not raw:
        return None
    address = _host_port(raw)
    if address is None or address[1] is None:
        raise _fail("CALLFS_METRICS_BIND", f"{raw!r} is not a TCP host:port such as "
                    "127.0.0.1:9100")
    host, port = address
    if not 1 <= port <= 65535:
        raise _fail("CALLFS_METRICS_BIND", f"port {port} is not from 1 to 65535")
    main = _host_port(bind)
    if main is not None and port == (main[1] or 8000):  # gunicorn's default port
        # Requests are told apart by the port they arrived on.
        raise _fail("CALLFS_METRICS_BIND", f"port {port} is CALLFS_BIND's; give the metrics "
                    "listener a port of its own")
    return f"{host or '0.0.0.0'}:{port}"  # noqa: S104 - upstream's ":9090" means every address


def _published(key: str) -> bool:
    return key in PUBLISHED_SECRET_KEYS or key.startswith(PUBLISHED_SECRET_KEY_PREFIX)


def _secret_key(env: environ.Env, debug: bool) -> tuple[str, Path | None]:
    """DJANGO_SECRET_KEY, else the key in DJANGO_SECRET_KEY_FILE (made on first use), and the
    file it came from."""
    key = env.str("DJANGO_SECRET_KEY", default="")
    if key:
        if len(key) < MIN_SECRET_LENGTH:
            raise _fail("DJANGO_SECRET_KEY",
                        f"must be at least {MIN_SECRET_LENGTH} characters long")
        if _published(key) and not debug:
            raise _fail("DJANGO_SECRET_KEY", "is a published development key, refused with "
                        "DJANGO_DEBUG off: set a random secret of your own, or unset it to use "
                        f"a key generated in {SECRET_KEY_FILE}")
        return key, None
    path = Path(env.str("DJANGO_SECRET_KEY_FILE", default="") or SECRET_KEY_FILE)
    path = path if path.is_absolute() else BASE_DIR / path
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        key = _generate_secret_key(path)
    except (OSError, UnicodeError) as exc:
        raise _fail("DJANGO_SECRET_KEY_FILE", f"cannot read {path} "
                    f"({getattr(exc, 'strerror', None) or exc})") from None
    if len(key) < MIN_SECRET_LENGTH:
        raise _fail("DJANGO_SECRET_KEY_FILE", f"{path} holds fewer than {MIN_SECRET_LENGTH} "
                    "characters (delete it to have a new key made)")
    if _published(key) and not debug:
        raise _fail("DJANGO_SECRET_KEY_FILE", f"{path} holds a published development key, "
                    "refused with DJANGO_DEBUG off (delete it to have a new key made)")
    return key, path


def _generate_secret_key(path: Path) -> str:
    """Store a new random key at `path` (mode 0600) and return it; if another process (a
    gunicorn worker, a second manage.py) stored one first, return that one instead. The file
    appears complete or not at all: written and fsynced under a temporary name, then hard-linked
    into place, which fails rather than replace an existing key."""
    key = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(key + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(temporary, path)
        except FileExistsError:
            return path.read_text(encoding="utf-8").strip()
        finally:
            os.unlink(temporary)
        fsync_directory(path.parent)  # the key must outlive a crash: API keys are hashed with it
    except OSError as exc:
        raise _fail("DJANGO_SECRET_KEY_FILE", f"DJANGO_SECRET_KEY is unset and {path} cannot "
                    f"be created ({exc.strerror or exc}); set one of them") from None
    return key


def _database(env: environ.Env, lock_timeout: float, stock: bool) -> dict:
    raw = env.str("DATABASE_URL", default="sqlite:///var/callfs.sqlite3")
    try:
        with warnings.catch_warnings():  # an unknown scheme is reported below, in one line
            warnings.simplefilter("ignore")
            db = environ.Env.db_url_config(raw)
    except Exception as exc:  # django-environ raises several types for a bad URL
        raise _fail("DATABASE_URL", f"cannot parse {raw!r} ({exc})") from None
    engine = db.get("ENGINE", "")
    # django-prometheus's wrappers of the drivers count queries, errors and connections.
    # Off by default: labelling every query made small requests markedly slower (measured:
    # BENCHMARKS.md, "What profiling found").
    db_metrics = _bool(env, "CALLFS_DB_METRICS", False)
    if engine == "django.db.backends.sqlite3":
        # Django's SQLite with writers taking turns on a lock file and commits flushed
        # outside the write lock; in stock mode Django's own, durable by SQLite's FULL sync
        # (callfs_site.fastpaths).
        if stock:
            db["ENGINE"] = ("django_prometheus.db.backends.sqlite3" if db_metrics
                            else "django.db.backends.sqlite3")
        else:
            db["ENGINE"] = "callfs_site.sqlite.metrics" if db_metrics else "callfs_site.sqlite"
        name = db.get("NAME") or ""
        if name != ":memory:":
            path = Path(name)
            path = path if path.is_absolute() else BASE_DIR / path
            path.parent.mkdir(parents=True, exist_ok=True)  # the embedded default just works
            db["NAME"] = str(path)
        # Request-scoped, from a per-process pool of open connections (callfs_site.sqlite):
        # opening one per request cost too much CPU, keeping one per client connection too much
        # memory (measured: BENCHMARKS.md).
        db["CONN_MAX_AGE"] = 0
        db["OPTIONS"] = {
            # IMMEDIATE: a writer takes the lock at BEGIN, so two writers never deadlock on upgrade.
            "transaction_mode": "IMMEDIATE",
            # A writer waits this long for its turn, then gets 503 LOCK_TIMEOUT (a rename of a
            # large tree holds the one write lock meanwhile). The WAL mode and sync PRAGMAs
            # are the backend's (see there).
            "timeout": lock_timeout,
        }
        if stock:
            db["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"
    elif engine == "django.db.backends.postgresql":
        if db_metrics:
            db["ENGINE"] = "django_prometheus.db.backends.postgresql"
        if not db.get("NAME"):
            raise _fail("DATABASE_URL", "names no database")
        # A pool per worker process (psycopg_pool, through Django): a request borrows a
        # connection and gives it back when it ends (or before a long transfer, callfs_site.db),
        # so hundreds of connected clients share a few PostgreSQL connections.
        db["CONN_MAX_AGE"] = 0
        options = db.get("OPTIONS", {})
        db["OPTIONS"] = {**options, "pool": {
            "min_size": 1, "max_size": _int(env, "CALLFS_DB_POOL_SIZE", 10, 1), "timeout": 10},
            # A row lock (a tree being renamed or deleted holds its directories') is waited for
            # this long, then the request gets 503 LOCK_TIMEOUT, never a hang.
            "options": f"{options.get('options', '')} -c lock_timeout={round(lock_timeout * 1000)}"
            .strip()}
    else:
        raise _fail("DATABASE_URL", f"unsupported database {urlsplit(raw).scheme!r} "
                    "(use sqlite:/// or postgres://)")
    return db


def _api_keys(env: environ.Env) -> dict[str, str]:
    """Parse `user:key,key2,...`; a bare key becomes `api-user-<i>` as upstream's api_keys."""
    raw = env.str("CALLFS_API_KEYS", default="")
    keys: dict[str, str] = {}
    positional = 0
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        if ":" in entry:
            user, key = (s.strip() for s in entry.split(":", 1))
            if not user or user in RESERVED_USERNAMES or re.fullmatch(r"api-user-\d+", user):
                raise _fail("CALLFS_API_KEYS", f"user name {user!r} is reserved or empty")
        else:
            user, key = f"api-user-{positional}", entry
            positional += 1
        if len(key) < MIN_SECRET_LENGTH or key == "default-api-key":
            raise _fail("CALLFS_API_KEYS", f"the key of {user!r} must be at least "
                        f"{MIN_SECRET_LENGTH} characters and not a placeholder")
        if key in keys:
            raise _fail("CALLFS_API_KEYS", "a key may appear only once")
        keys[key] = user
    return keys


def _yaml_settings(path: str) -> dict[str, str]:
    """The settings an upstream CallFS `config.yaml` gives, as environment variable names.

    Shared keys only: server.external_url, auth.*, backend.* (localfs and S3), metadata_store
    (sqlite/postgres), dlm (redis), instance_discovery.instance_id, log.*, metrics.listen_addr.
    Raft, erasure coding and peer_endpoints have no equivalent (nodes register themselves in the
    shared database).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as exc:
        raise _fail("CALLFS_CONFIG", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise _fail("CALLFS_CONFIG", f"{path} is not valid YAML ({str(exc).splitlines()[0]})"
                    ) from None
    if not isinstance(data, dict):
        raise _fail("CALLFS_CONFIG", f"{path} must hold a mapping")

    def section(name: str) -> dict:
        value = data.get(name) or {}
        return value if isinstance(value, dict) else {}

    server, auth, backend = section("server"), section("auth"), section("backend")
    store, dlm, log = section("metadata_store"), section("dlm"), section("log")
    found: dict[str, object] = {
        "CALLFS_EXTERNAL_URL": server.get("external_url"),
        "CALLFS_NODE_URL": server.get("external_url"),
        "CALLFS_INTERNAL_SECRET": auth.get("internal_proxy_secret"),
        "CALLFS_LINK_SECRET": auth.get("single_use_link_secret"),
        "CALLFS_DEFAULT_BACKEND": backend.get("default_backend"),
        "CALLFS_DATA_DIR": backend.get("localfs_root_path"),
        "CALLFS_S3_BUCKET": backend.get("s3_bucket_name"),
        "CALLFS_S3_ENDPOINT_URL": backend.get("s3_endpoint"),
        "CALLFS_S3_REGION": backend.get("s3_region"),
        "CALLFS_S3_ACCESS_KEY": backend.get("s3_access_key"),
        "CALLFS_S3_SECRET_KEY": backend.get("s3_secret_key"),
        "CALLFS_NODE_ID": section("instance_discovery").get("instance_id"),
        "CALLFS_METRICS_BIND": section("metrics").get("listen_addr"),
        "CALLFS_LOG_LEVEL": log.get("level"),
        "CALLFS_LOG_FORMAT": {"json": "json"}.get(log.get("format"), "console")
        if log.get("format") else None,
    }
    listen = str(server.get("listen_addr") or "")
    if listen:
        found["CALLFS_BIND"] = f"0.0.0.0{listen}" if listen.startswith(":") else listen  # noqa: S104 - upstream ":8443"
    keys = [str(k) for k in auth.get("api_keys") or []]
    keys += [f"{user}:{key}" for user, key in (auth.get("api_key_users") or {}).items()]
    if keys:
        found["CALLFS_API_KEYS"] = ",".join(keys)
    if store.get("type") == "sqlite" and store.get("sqlite_path"):
        sqlite_path = str(store["sqlite_path"])
        found["DATABASE_URL"] = f"sqlite:///{sqlite_path}" if not sqlite_path.startswith("/") \
            else f"sqlite:////{sqlite_path.lstrip('/')}"
    elif store.get("type") == "postgres" and store.get("dsn"):
        found["DATABASE_URL"] = str(store["dsn"])
    if dlm.get("type") == "redis" and dlm.get("redis_addr"):
        password = dlm.get("redis_password")
        auth_part = f":{password}@" if password else ""
        found["REDIS_URL"] = f"redis://{auth_part}{dlm['redis_addr']}/0"
    return {name: str(value) for name, value in found.items() if value not in (None, "")}


def load_config(environment: dict[str, str] | None = None) -> Config:
    """Read and check every setting (environment over CALLFS_CONFIG's YAML over defaults);
    raise ImproperlyConfigured naming the first bad one."""
    env = environ.Env()
    source = dict(os.environ if environment is None else environment)
    if source.get("CALLFS_CONFIG"):
        source = {**_yaml_settings(source["CALLFS_CONFIG"]), **source}
    env.ENVIRON = source
    debug = _bool(env, "DJANGO_DEBUG", False)
    secret_key, secret_key_file = _secret_key(env, debug)
    allowed_hosts = [h.strip() for h in env.str("DJANGO_ALLOWED_HOSTS", default="*").split(",")
                     if h.strip()]

    default_backend = env.str("CALLFS_DEFAULT_BACKEND", default="localfs")
    if default_backend not in BACKENDS:
        raise _fail("CALLFS_DEFAULT_BACKEND", f"{default_backend!r} is not one of {BACKENDS}")
    s3_bucket = env.str("CALLFS_S3_BUCKET", default="") or None
    if default_backend == "s3" and not s3_bucket:
        raise _fail("CALLFS_S3_BUCKET", "must be set when CALLFS_DEFAULT_BACKEND=s3")
    s3_prefix = env.str("CALLFS_S3_PREFIX", default="callfs/")
    if not re.fullmatch(r"((?!\.\.?/)[A-Za-z0-9._-]+/)*", s3_prefix) or len(s3_prefix) > 512:
        raise _fail("CALLFS_S3_PREFIX", f"{s3_prefix!r} must be empty or segments of letters, "
                    "digits, '.', '_' or '-', each ending in '/' (such as callfs/)")

    umask_raw = env.str("CALLFS_UMASK", default="022")
    if not re.fullmatch(r"0?[0-7]{1,3}", umask_raw):
        raise _fail("CALLFS_UMASK", f"{umask_raw!r} is not an octal umask such as 022")

    link_secret = _secret(env, "CALLFS_LINK_SECRET") or f"link:{secret_key}"
    internal_secret = _secret(env, "CALLFS_INTERNAL_SECRET")
    api_keys = _api_keys(env)
    if internal_secret and internal_secret in api_keys:
        raise _fail("CALLFS_INTERNAL_SECRET", "must differ from every API key")
    replicas = _int(env, "CALLFS_REPLICAS", 1, 1)
    if replicas > 16:
        raise _fail("CALLFS_REPLICAS", "must be at most 16")
    if replicas > 1 and not internal_secret:
        raise _fail("CALLFS_REPLICAS", "copies on other nodes need a cluster: set "
                    "CALLFS_INTERNAL_SECRET (and a shared DATABASE_URL and REDIS_URL)")

    log_format = env.str("CALLFS_LOG_FORMAT", default="console")
    if log_format not in ("console", "json"):
        raise _fail("CALLFS_LOG_FORMAT", f"{log_format!r} is not 'console' or 'json'")
    log_level = env.str("CALLFS_LOG_LEVEL", default="info").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise _fail("CALLFS_LOG_LEVEL", f"{log_level.lower()!r} is not a log level")

    node_id = env.str("CALLFS_NODE_ID", default="") or socket.gethostname()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", node_id):
        raise _fail("CALLFS_NODE_ID", f"{node_id!r} must be 1-64 letters, digits, '.', '_' or '-'")

    lock_timeout = float(_int(env, "CALLFS_LOCK_TIMEOUT", 30, 1))
    stock = _bool(env, "CALLFS_STOCK", False)
    if not stock and (mismatches := fastpaths.version_mismatches()):
        raise _fail("CALLFS_STOCK", "; ".join(mismatches) + ". Install the versions in "
                    "requirements.txt, or set CALLFS_STOCK=1 to run without the fast paths")
    data_dir = Path(env.str("CALLFS_DATA_DIR", default="var/data"))
    bind = env.str("CALLFS_BIND", default="127.0.0.1:8000")

    return Config(
        debug=debug,
        secret_key=secret_key,
        allowed_hosts=allowed_hosts,
        database=_database(env, lock_timeout, stock),
        stock=stock,
        redis_url=_url(env, "REDIS_URL", None, ("redis", "rediss", "unix")),
        data_dir=data_dir if data_dir.is_absolute() else BASE_DIR / data_dir,
        default_backend=default_backend,
        s3_bucket=s3_bucket,
        s3_endpoint_url=_url(env, "CALLFS_S3_ENDPOINT_URL", None, ("http", "https")),
        s3_region=env.str("CALLFS_S3_REGION", default="") or None,
        s3_access_key=env.str("CALLFS_S3_ACCESS_KEY", default="") or None,
        s3_secret_key=env.str("CALLFS_S3_SECRET_KEY", default="") or None,
        s3_prefix=s3_prefix,
        node_id=node_id,
        node_url=_url(env, "CALLFS_NODE_URL", "http://127.0.0.1:8000", ("http", "https")) or "",
        internal_secret=internal_secret,
        link_secret=link_secret,
        external_url=_url(env, "CALLFS_EXTERNAL_URL", None, ("http", "https")),
        api_keys=api_keys,
        log_format=log_format,
        log_level=log_level,
        max_upload_bytes=_int(env, "CALLFS_MAX_UPLOAD_BYTES", 10 * 1024**3, 0),
        lock_timeout=lock_timeout,
        # A connection waiting this long for its client's next byte (sent or read) is closed.
        idle_timeout=float(_int(env, "CALLFS_IDLE_TIMEOUT", 60, 1)),
        replicas=replicas,
        replicas_strict=_bool(env, "CALLFS_REPLICAS_STRICT", False),
        repair_interval=float(_int(env, "CALLFS_REPAIR_INTERVAL", 60, 0)),
        umask=int(umask_raw, 8),
        metrics_public=_bool(env, "CALLFS_METRICS_PUBLIC", False),
        bind=bind,
        metrics_bind=_metrics_bind(env, bind),
        secret_key_file=secret_key_file,
    )


def exit_on_bad_config() -> Config:
    """Load the config for an entry point; on a bad setting print one line and exit 2."""
    try:
        return load_config()
    except ImproperlyConfigured as exc:
        print(f"callfs: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
