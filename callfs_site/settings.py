"""Django settings for CallFS. Values come from `callfs_site.config`; this module only assigns."""

from callfs_site.config import BASE_DIR, load_config
from callfs_site.logs import logging_config

CALLFS = load_config()

SECRET_KEY = CALLFS.secret_key
DEBUG = CALLFS.debug
ALLOWED_HOSTS = CALLFS.allowed_hosts

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_prometheus",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",  # below the others: they may import it, it imports none of them
    "cluster",
    "filesystem",
    "links",
]

MIDDLEWARE = [
    # First: it stamps every response, errors included, with the request id and security headers.
    "callfs_site.middleware.RequestContextMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's session, CSRF, user and message middleware, for the admin's paths only.
    "callfs_site.middleware.SessionMiddleware",
    "callfs_site.middleware.CsrfViewMiddleware",
    "callfs_site.middleware.AuthenticationMiddleware",
    "callfs_site.middleware.MessageMiddleware",
]

ROOT_URLCONF = "callfs_site.urls"
WSGI_APPLICATION = "callfs_site.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # The admin index's totals: from every app, so not an app's templatetags.
            "libraries": {"callfs_dashboard": "callfs_site.dashboard"},
        },
    },
]

DATABASES = {"default": CALLFS.database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if CALLFS.redis_url:
    _redis = {
        # django-redis, counted by django-prometheus (hits, misses, failures)
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": CALLFS.redis_url,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 5,
            # Off on purpose: with it on, django-redis hides a Redis outage and lock() returns None.
            "IGNORE_EXCEPTIONS": False,
        },
    }
    CACHES = {
        "default": {**_redis, "KEY_PREFIX": "callfs"},
        "locks": {**_redis, "KEY_PREFIX": "lk"},
    }
else:
    CACHES = {"default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The admin's stylesheet, used by every app's pages, beside the shared templates/.
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # collectstatic target; WhiteNoise wants it to exist
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve admin assets without a collectstatic step
WHITENOISE_AUTOREFRESH = DEBUG

# Request bodies of the file API are streamed by filesystem.api.streaming, never buffered by Django.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.BearerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "callfs_site.negotiation.JSONOnlyNegotiation",
    "EXCEPTION_HANDLER": "callfs_site.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

LOGGING_CONFIG = "logging.config.dictConfig"
LOGGING = logging_config(CALLFS.log_format, CALLFS.log_level)

SPECTACULAR_SETTINGS = {
    "TITLE": "CallFS",
    "DESCRIPTION": "A filesystem over HTTP, wire-compatible with CallFS's /v1 API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files: the CSP (script-src 'self') forbids CDNs.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "AUTHENTICATION_WHITELIST": ["accounts.authentication.BearerAuthentication"],
    "PREPROCESSING_HOOKS": ["callfs_site.schema.hide_aliases"],
    "ENUM_NAME_OVERRIDES": {"ErrorCodeEnum": "callfs_site.schema.error_code_choices"},
}
