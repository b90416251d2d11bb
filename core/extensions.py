"""Flask extensions, created once and bound in create_app()."""

from __future__ import annotations

from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_talisman import Talisman
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
bootstrap = Bootstrap5()
migrate = Migrate()
limiter = Limiter(key_func=get_remote_address)
talisman = Talisman()

# Everything is served from this server (air-gapped plants): no CDN, no inline script.
CONTENT_SECURITY_POLICY = {
    "default-src": "'self'",
    "img-src": ["'self'", "data:"],
    "style-src": "'self'",
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
